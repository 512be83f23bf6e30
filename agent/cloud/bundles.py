"""Bundles into the cloud: ``lichen bundle import`` in a cloud home, and
``POST /v1/bundles`` on the cloud's HTTP API.

Both admit a bundle exactly as the cloud admits uploads. Pass 1 is the
importer's (:func:`agent.bundle.importer.verify_bundle`: the whole bundle
checked before anything is stored; a sealed one opened with the cloud's own
key). Pass 2 hands each chunk's entries to the cloud's
:class:`~agent.cloud.ingest.Ingestor` — the ingestion core's judgement
(strict decoding, the size cap, admitted authors, signatures), the
configured sink (its chain, fork and quota rules, exactly once) and the
acknowledgements the cloud signs for every feed that became contiguous
further — the same path an MQTT batch takes, without its uploader rule
(no one uploaded a bundle: its entries are judged by their authors).

A phone (or anyone holding a bundle and the API's token) uploads a bundle as
the request body. The server spools it to a temporary file (never whole in
memory; at most ``[cloud] max_bundle`` bytes), and :class:`BundleIntake`
imports it by the same path (:func:`import_into_ingestor`): the whole bundle verified
first — a sealed one opened with the cloud's own key — so a truncated,
corrupt or forged bundle is refused with the reason and nothing is stored;
then its entries judged, stored exactly once and acknowledged by the role's
own :class:`~agent.cloud.ingest.Ingestor`.

The answer says what became of the entries and carries the **custody
receipts** back: for the board that made the bundle, the cloud's current
``_acks`` entry of every feed in it, and its latest time beacon (``_time``),
as one entry batch
(:func:`agent.uplink.wire.encode_entry_batch`, base64) that the phone hands
over to that board unchanged (``POST /mule/v1/handover``, docs/field.md).
Uploading the same bundle again stores nothing and answers the same receipts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..bundle.format import BundleError
from ..bundle.importer import (
    ImportReport,
    check_room,
    read_manifest,
    room_needed,
    verified_chunks,
    verify_bundle,
)
from ..bundle.reader import Chunk
from ..bundle.seal import Opener
from ..http import Request, Response, json_response
from ..identity import NodeId
from ..uplink.wire import encode_entry_batch
from .ingest import Ingestor
from .sink import SinkError

if TYPE_CHECKING:
    from ..config import Config
    from ..home import Home
    from ..identity import Identity

__all__ = [
    "BUNDLE_CONTENT_TYPE",
    "HANDOVER_CONTENT_TYPE",
    "BundleIntake",
    "import_into_cloud",
    "import_into_ingestor",
]

BUNDLE_CONTENT_TYPE = "application/vnd.lichen.bundle"
#: what the phone posts to a board: an entry batch ([1, [entry, …]], docs/uplink.md)
HANDOVER_CONTENT_TYPE = "application/vnd.lichen.entries+cbor"


class BundleIntake:
    """Imports uploaded bundles into the role's sink, one at a time.

    ``spool_dir``: where an upload is written while it is imported (removed after);
    ``for_board(node)``: more of the cloud's own entries the board that exported
    the bundle gets with its receipts (the role's fresh time beacon, the
    commands it has not answered)."""

    def __init__(
        self,
        ingestor: Ingestor,
        opener: Opener,
        spool_dir: Path,
        for_board: Callable[[str], Awaitable[Sequence[bytes]]] | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.for_board = for_board
        self.opener = opener
        self.spool_dir = spool_dir
        self.uploads = 0
        self.refused = 0
        self._lock = asyncio.Lock()

    async def __call__(self, request: Request) -> Response:
        if request.body is None or request.body_size == 0:
            return json_response(
                400, {"error": "POST the bundle as the request body (lichen bundle export FILE)"}
            )
        async with self._lock:
            path = await asyncio.to_thread(self._save, request.body)
            try:
                return await self._import(path)
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()

    def _save(self, body: IO[bytes]) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".lcb", dir=self.spool_dir)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(body, out, 256 * 1024)
        return Path(name)

    async def _import(self, path: Path) -> Response:
        try:
            report = await import_into_ingestor(path, self.ingestor, self.opener)
        except BundleError as exc:
            self.refused += 1
            reason = str(exc).replace(str(path), "the bundle").replace(f"{path.name}: ", "")
            return json_response(400, {"error": reason, "stored": 0})
        except SinkError as exc:
            return json_response(503, {"error": f"the cloud's store failed: {exc}"})
        self.uploads += 1
        manifest = report.manifest
        feeds = [span.author for span in manifest.feeds]
        current = await self.ingestor.sink.current_acks(sorted(feeds))
        receipts = [raw for _, (_, raw) in sorted(current.items())]
        board = str(NodeId(manifest.exporter))
        extra = list(await self.for_board(board)) if self.for_board is not None and receipts else []
        body: dict[str, Any] = report.as_json()
        body.pop("file", None)
        body["receipts"] = {
            "board": board,
            "acks": {str(NodeId(feed)): seq for feed, (seq, _) in sorted(current.items())},
            "entries": len(receipts) + len(extra),
            "content_type": HANDOVER_CONTENT_TYPE,
            "handover": base64.b64encode(encode_entry_batch([*receipts, *extra])).decode()
            if receipts
            else None,
        }
        return json_response(200, body)


async def import_into_ingestor(path: Path, ingestor: Ingestor, opener: Opener) -> ImportReport:
    """Verify the bundle at ``path`` whole, then ingest its entries chunk by chunk."""
    started = time.perf_counter()
    header, manifest, digests = await asyncio.to_thread(verify_bundle, path, opener=opener)
    report = ImportReport(path, header, manifest, verify_seconds=time.perf_counter() - started)
    started = time.perf_counter()
    source = f"bundle {path.name}"
    chunks = verified_chunks(path, digests, opener=opener)
    while (chunk := await asyncio.to_thread(_next, chunks)) is not None:
        # pass 1 verified every signature of these very bytes (the chunk's digest matched)
        raws = [entry.raw for entry in chunk.entries]
        result = await ingestor.ingest_entries(source, raws, signatures_verified=True)
        report.stored += result.stored
        report.held += result.duplicates
        for rejection in result.rejections:
            report.refuse(f"{rejection.where or source}: {rejection.kind}: {rejection.reason}")
    report.store_seconds = time.perf_counter() - started
    return report


def _next(chunks: Iterator[Chunk]) -> Chunk | None:
    return next(chunks, None)


def import_into_cloud(path: Path, home: Home, config: Config, identity: Identity) -> ImportReport:
    """``lichen bundle import`` in a cloud home: the configured sink, trust and quota."""
    return asyncio.run(_import(path, home, config, identity))


async def _import(path: Path, home: Home, config: Config, identity: Identity) -> ImportReport:
    from ..mesh.trust import TrustStore
    from ..node import Node
    from ..uplink.wire import MAX_PAYLOAD
    from .core import IngestCore
    from .fleet import cloud_fleet, load_fleet
    from .ingest import admitted_authors, make_sink

    cloud = config.cloud
    _, manifest = read_manifest(path)
    if cloud.sink != "postgres":
        check_room(room_needed(manifest), home.database.parent)
    max_size = max(config.log.max_entry_size, MAX_PAYLOAD)  # as the role takes them
    node = Node.for_home(home, config, identity, max_entry_size=max_size)
    await node.start()
    writer = node.writer
    try:
        sink = make_sink(cloud, writer, home, max_size)
        trusted = admitted_authors(cloud, TrustStore(home.trust_file), identity.node_id.key)
        fleet = cloud_fleet(cloud, home)
        core = IngestCore(
            prefix=cloud.prefix, trusted=trusted, max_entry_size=max_size, fleet=fleet
        )
        try:
            await sink.open()
            if fleet is not None:
                await load_fleet(fleet, sink, node.reader)
            try:
                return await import_into_ingestor(
                    path, Ingestor(core, sink, writer), Opener(identity)
                )
            finally:
                await sink.close()
        except SinkError as exc:
            raise BundleError(f"the cloud's store failed: {exc}; nothing more was stored") from None
    finally:
        await node.close()
