"""Import: a bundle file into this node's log, all verified before anything is stored.

Two passes over the file, each in bounded memory (one chunk at a time):

1. **verify** — the manifest first (read from the file's end: the exporter's
   signature, whether the bundle is sealed to this node, room on the disk),
   then every byte (:class:`~agent.bundle.reader.BundleReader`: structure,
   decryption, every entry's signature and chain, the content hash). A
   truncated, corrupt, forged bundle, or one sealed to another node, is
   refused here with the reason, and nothing is written.
2. **store** — the file again; each chunk must have the digest it had in
   pass 1 (a file changed in between is refused from that chunk on), and its
   entries go through the store's own insert command
   (:class:`~agent.store.commands.Insert`: chain, fork and watermark rules)
   after the access policy's ``may_write``, as a sync session stores them.
   Entries already held are counted, not written again: importing a bundle
   twice, or again after an interruption, stores each entry once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..entry import Entry
from ..identity import NodeId
from ..sansio import NEED_DATA
from ..store.commands import Insert
from ..store.log_store import InsertOutcome, LogStore
from ..store.verify_workers import CheckFailed, VerifyWorkers, WorkersFailed, workers_for
from ..sync.plan import ALLOW_ALL, AccessPolicy
from .format import (
    FRAME_HEAD,
    KIND_HEADER,
    KIND_MANIFEST,
    MAGIC,
    MAX_CHUNK,
    MAX_HEADER,
    MAX_MANIFEST,
    BundleError,
    Header,
    Manifest,
    check_same_bundle,
    decode_header,
    decode_manifest_frame,
    frame_head,
    trailer_length,
)
from .reader import BundleEnd, BundleReader, Chunk
from .seal import Opener

__all__ = [
    "ImportReport",
    "check_room",
    "import_into_store",
    "read_chunks",
    "read_manifest",
    "verify_bundle",
]

log = logging.getLogger("lichen.bundle")

READ_SIZE = 256 * 1024
# per transaction, whichever comes first: a running agent's writer waits for one
# at most, and the importer holds one group of decoded entries in memory
STORE_GROUP = 2048
STORE_GROUP_BYTES = 4 * 1024 * 1024
ROOM_MARGIN = 16 * 1024 * 1024


@dataclass(slots=True)
class ImportReport:
    """What became of a bundle's entries here."""

    path: Path
    header: Header
    manifest: Manifest
    stored: int = 0
    held: int = 0  # already held (or pruned here on purpose): not written again
    refused: int = 0
    refused_by_policy: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few refusals
    verify_seconds: float = 0.0
    store_seconds: float = 0.0

    def refuse(self, reason: str) -> None:
        self.refused += 1
        if len(self.reasons) < 5:
            self.reasons.append(reason)

    def as_json(self) -> dict[str, Any]:
        m, recipient = self.manifest, self.header.recipient
        return {
            "file": str(self.path),
            "bundle_id": m.bundle_id.hex(),
            "exporter": str(NodeId(m.exporter)),
            "sealed_to": None if recipient is None else str(NodeId(recipient)),
            "entries": m.entries,
            "stored": self.stored,
            "already_held": self.held,
            "refused": self.refused,
            "refused_by_policy": self.refused_by_policy,
            "reasons": self.reasons,
            "verify_seconds": round(self.verify_seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
        }


def read_manifest(path: Path) -> tuple[Header, Manifest]:
    """The header and the signed manifest of the bundle file at ``path``, read
    from its two ends (the content is not checked against them here)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = f.read(len(MAGIC) + FRAME_HEAD + MAX_HEADER)
            if start[: len(MAGIC)] != MAGIC:
                raise BundleError(f"{path} is not a Lichen bundle")
            if size < len(MAGIC) + 3 * FRAME_HEAD + 8:
                raise BundleError(f"{path} is truncated ({size} bytes)")
            header = decode_header(_frame_body(start[len(MAGIC) :], KIND_HEADER, path, "header"))
            f.seek(size - 8)
            length = trailer_length(f.read(8))
            if length is None or length > MAX_MANIFEST or length + 13 > size:
                raise BundleError(
                    f"{path} is truncated or its end is corrupt (no bundle trailer): "
                    "copy it again from its source"
                )
            f.seek(size - 8 - length - FRAME_HEAD)
            framed = f.read(length + FRAME_HEAD)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    body = _frame_body(framed, KIND_MANIFEST, path, "manifest")
    if len(body) != length:
        raise BundleError(f"{path}: the bundle's manifest is corrupt")
    manifest = decode_manifest_frame(body)
    try:
        check_same_bundle(header, manifest)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    return header, manifest


def _frame_body(data: bytes, kind: int, path: Path, what: str) -> bytes:
    """The body of the ``kind`` frame ``data`` starts with, whole; else the
    bundle at ``path`` is refused, its ``what`` corrupt."""
    found, length = None, 0
    if len(data) >= FRAME_HEAD:
        with contextlib.suppress(BundleError):  # an unknown kind, a length above the limit
            found, length = frame_head(data[:FRAME_HEAD])
    body = data[FRAME_HEAD : FRAME_HEAD + length]
    if found != kind or len(body) != length:
        raise BundleError(f"{path}: the bundle's {what} is corrupt")
    return body


def check_room(needed: int, directory: Path) -> None:
    """Refuse an import that would fill the disk holding ``directory``."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise BundleError(
            f"importing needs about {needed // 2**20 + 1} MiB free in {directory}; "
            f"{free // 2**20} MiB are. Fix: free space, or import a smaller bundle "
            "(export with --max-size)"
        )


def room_needed(manifest: Manifest) -> int:
    """Disk an import of ``manifest`` may take: its entries twice (rows, indexes
    and the WAL) and a margin."""
    return 2 * manifest.entry_bytes + ROOM_MARGIN


def read_chunks(
    path: Path,
    *,
    opener: Opener | None,
    verify: bool = True,
    max_entry_size: int = MAX_CHUNK,
) -> Iterator[Chunk | BundleEnd]:
    """The chunks of the bundle file at ``path``, then its end (read 256 KiB at a time)."""
    reader = BundleReader(opener=opener, verify=verify, max_entry_size=max_entry_size)
    try:
        with path.open("rb") as f:
            while True:
                data = f.read(READ_SIZE)
                reader.receive_data(data)
                while (event := reader.next_event()) is not NEED_DATA:
                    if isinstance(event, Chunk | BundleEnd):
                        yield event
                    if isinstance(event, BundleEnd):
                        return
                if not data:
                    raise BundleError(f"{path}: the bundle ended without its manifest")
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None


def verify_bundle(
    path: Path,
    *,
    opener: Opener | None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> tuple[Header, Manifest, list[bytes]]:
    """Pass 1: the header, the manifest and each chunk's digest, once every byte
    and every entry checked out; raises :class:`BundleError` otherwise.

    A large bundle's entries are decoded strictly and their signatures checked
    in ``workers`` processes (default: :func:`~agent.store.verify_workers.workers_for`
    its entry count; 0 checks them in this process), while this one reads,
    decrypts and follows the chains."""
    header, manifest = read_manifest(path)
    if header.sealed and opener is not None:
        opener.content_key(header.recipient or b"", header.sealed_key or b"")  # refuse early
    if workers is None:
        workers = workers_for(manifest.entries)
    if workers == 0:
        return header, manifest, _verify_chunks(path, manifest, opener, progress, None)
    try:
        with VerifyWorkers(workers, max_entry_size=MAX_CHUNK) as pool:
            try:
                try:
                    digests = _verify_chunks(path, manifest, opener, progress, pool)
                except BundleError:
                    # an earlier chunk's forged entry is the first fault; else the
                    # reader met a fault the workers had not judged yet (a forged
                    # entry breaks the chain of the next): read again in-process,
                    # which names the first fault as an import without workers does
                    pool.finish()
                    _verify_chunks(path, manifest, opener, None, None)
                    raise
                pool.finish()
            except CheckFailed as exc:
                raise BundleError(f"chunk {exc.tag}: a forged or corrupt entry: {exc}") from None
    except WorkersFailed as exc:
        log.warning("%s; checking %s in this process", exc, path.name)
        return header, manifest, _verify_chunks(path, manifest, opener, progress, None)
    return header, manifest, digests


def _verify_chunks(
    path: Path,
    manifest: Manifest,
    opener: Opener | None,
    progress: Callable[[int], None] | None,
    pool: VerifyWorkers | None,
) -> list[bytes]:
    digests: list[bytes] = []
    done = 0
    # with a pool the reader only decodes loosely (for the chains); the workers
    # prove each entry's canonical form and signature
    for event in read_chunks(path, opener=opener, verify=pool is None):
        if isinstance(event, BundleEnd):
            if event.manifest != manifest:
                raise BundleError(f"{path} changed while it was read")
            return digests
        if pool is not None:
            pool.submit(event.index, [entry.raw for entry in event.entries])
        digests.append(event.digest)
        done += len(event.entries)
        if progress is not None:
            progress(done)
    raise BundleError(f"{path}: the bundle ended without its manifest")  # pragma: no cover


def verified_chunks(path: Path, digests: list[bytes], *, opener: Opener | None) -> Iterator[Chunk]:
    """Pass 2: the chunks again, each checked against its digest from pass 1."""
    for event in read_chunks(path, opener=opener, verify=False):
        if isinstance(event, BundleEnd):
            return
        if event.index >= len(digests) or event.digest != digests[event.index]:
            raise BundleError(
                f"{path} changed since it was verified (chunk {event.index}); nothing more was "
                "stored. Fix: import it again"
            )
        yield event


def import_into_store(
    path: Path,
    store: LogStore,
    *,
    opener: Opener | None,
    policy: AccessPolicy = ALLOW_ALL,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Verify the bundle at ``path`` whole, then store its entries in ``store``.
    ``progress(done)`` counts entries verified, then as many again stored (of
    twice the manifest's entries). ``workers``: see :func:`verify_bundle`."""
    started = time.perf_counter()
    header, manifest = read_manifest(path)
    check_room(room_needed(manifest), store.path.parent)
    header, manifest, digests = verify_bundle(
        path, opener=opener, progress=progress, workers=workers
    )
    report = ImportReport(path, header, manifest, verify_seconds=time.perf_counter() - started)
    started = time.perf_counter()
    group: list[Entry] = []
    size = 0
    for chunk in verified_chunks(path, digests, opener=opener):
        for entry in chunk.entries:
            if policy.may_write(entry.author, entry.collection, entry.seq):
                group.append(entry)
                size += len(entry.raw)
            else:
                report.refused_by_policy += 1
        if len(group) >= STORE_GROUP or size >= STORE_GROUP_BYTES:
            _store(store, group, report)
            group, size = [], 0
            if progress is not None:
                progress(manifest.entries + report.stored + report.held + report.refused)
    if group:
        _store(store, group, report)
    report.store_seconds = time.perf_counter() - started
    return report


def _store(store: LogStore, entries: list[Entry], report: ImportReport) -> None:
    commands = [functools.partial(Insert(entry).apply, store) for entry in entries]
    for entry, outcome in zip(entries, store.batch(commands), strict=True):
        if isinstance(outcome, ValueError):
            report.refuse(f"{entry.where}: {getattr(outcome, 'reason', outcome)}")
        elif outcome is InsertOutcome.STORED:
            report.stored += 1
        else:
            report.held += 1
