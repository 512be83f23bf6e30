"""Import into a cloud home: a bundle admitted exactly as the cloud admits uploads.

Pass 1 is the importer's (:func:`agent.bundle.importer.verify_bundle`: the
whole bundle checked before anything is stored; a sealed one opened with the
cloud's own key). Pass 2 hands each chunk's entries to the cloud's
:class:`~agent.cloud.ingest.Ingestor` — the ingestion core's judgement
(strict decoding, the size cap, admitted authors, signatures), the
configured sink (its chain, fork and quota rules, exactly once) and the
acknowledgements the cloud signs for every feed that became contiguous
further — the same path an MQTT batch takes, without its uploader rule
(no one uploaded a bundle: its entries are judged by their authors).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .format import BundleError
from .importer import (
    ImportReport,
    check_room,
    read_manifest,
    room_needed,
    verified_chunks,
    verify_bundle,
)
from .reader import Chunk
from .seal import Opener

if TYPE_CHECKING:
    from ..cloud.ingest import Ingestor
    from ..config import Config
    from ..home import Home
    from ..identity import Identity

__all__ = ["import_into_cloud", "import_into_ingestor"]


async def import_into_ingestor(path: Path, ingestor: Ingestor, opener: Opener) -> ImportReport:
    """Verify the bundle at ``path`` whole, then ingest its entries chunk by chunk."""
    started = time.perf_counter()
    header, manifest, digests = await asyncio.to_thread(verify_bundle, path, opener=opener)
    report = ImportReport(path, header, manifest, verify_seconds=time.perf_counter() - started)
    started = time.perf_counter()
    source = f"bundle {path.name}"
    chunks = verified_chunks(path, digests, opener=opener)
    while (chunk := await asyncio.to_thread(_next, chunks)) is not None:
        result = await ingestor.ingest_entries(source, [entry.raw for entry in chunk.entries])
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
    from ..cloud.core import IngestCore
    from ..cloud.ingest import Ingestor, admitted_authors
    from ..cloud.role import make_sink
    from ..cloud.sink import SinkError
    from ..mesh.trust import TrustStore
    from ..node import Node
    from ..uplink.wire import MAX_PAYLOAD

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
        core = IngestCore(prefix=cloud.prefix, trusted=trusted, max_entry_size=max_size)
        try:
            await sink.open()
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
