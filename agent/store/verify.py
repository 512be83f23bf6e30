"""Full verification of a stored log: what ``lichen log verify`` runs.

For every stored entry, in feed order: the bytes decode as an entry, the
signature verifies, the indexed columns (author, seq, timestamp, collection)
agree with the signed content, ``prev`` names the hash of the stored entry
before it and timestamps increase along the feed; each feed's recorded head
matches its head entry. Every fault is reported with the entry it concerns;
verification goes on after a fault so one report lists them all.

Signatures are checked on a pool of threads (libsodium releases the GIL), in
chunks, while the calling thread decodes and follows the chains; at most a few
chunks are in flight, so memory stays bounded on any size of log.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..entry import Entry, decode_entry, verify_entry
from ..errors import EntryError
from ..identity import NodeId
from .log_store import LogStore

__all__ = ["Fault", "VerifyReport", "verify_log"]

CHUNK = 256


@dataclass(frozen=True, slots=True)
class Fault:
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    feeds: int = 0
    faults: list[Fault] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.faults


@dataclass(slots=True)
class _Row:
    author: bytes
    seq: int
    ts: int
    collection: str
    entry: Entry | None
    problem: str | None = None


def _where(row: _Row) -> str:
    return f"{NodeId(row.author).short}…/{row.seq} ({row.collection})"


def _decoded(store: LogStore) -> Iterator[list[_Row]]:
    """Stored rows, decoded, in chunks (decoding problems recorded on the row)."""
    chunk: list[_Row] = []
    for author, seq, ts, collection, raw in store.raw_rows():
        try:
            # the signature covers every content byte, and canonical form was
            # proved on insert: read the fields without proving it again
            row = _Row(
                author, seq, ts, collection, decode_entry(raw, max_size=len(raw), strict=False)
            )
        except EntryError as exc:
            row = _Row(author, seq, ts, collection, None, exc.reason)
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_signatures(chunk: list[_Row]) -> list[_Row]:
    for row in chunk:
        if row.entry is not None:
            try:
                verify_entry(row.entry)
            except EntryError as exc:
                row.problem = exc.reason
    return chunk


def verify_log(
    store: LogStore,
    *,
    progress: Callable[[int], None] | None = None,
    max_faults: int = 1000,
    threads: int | None = None,
) -> VerifyReport:
    """Check every entry; ``progress(n)`` is called after every chunk."""
    report = VerifyReport()
    heads = {h.author: h for h in store.heads()}
    report.feeds = len(heads)
    last_author: bytes | None = None
    last_seq, last_hash, last_ts = 0, b"", 0

    def fault(row: _Row, problem: str) -> None:
        if len(report.faults) < max_faults:
            report.faults.append(Fault(_where(row), problem))
        else:
            report.truncated = True

    def follow(chunk: list[_Row]) -> None:
        nonlocal last_author, last_seq, last_hash, last_ts
        for row in chunk:
            report.entries += 1
            if row.author != last_author:
                last_author, last_seq = row.author, 0
            entry = row.entry
            if entry is None or row.problem is not None:
                fault(row, row.problem or "unreadable")
                last_seq = 0  # the chain cannot be followed through a broken entry
                continue
            seq = row.seq
            if (entry.author, entry.seq, entry.ts, entry.collection) != (
                row.author, seq, row.ts, row.collection,
            ):  # fmt: skip
                fault(row, "stored columns (author, seq, ts, collection) disagree with the entry")
            if last_seq == seq - 1 and seq > 1:
                if entry.prev != last_hash:
                    fault(row, f"prev does not match the hash of entry {seq - 1}")
                if entry.ts <= last_ts:
                    fault(row, f"timestamp does not increase after entry {seq - 1}")
            head = heads.get(row.author)
            if head is not None and head.seq == seq and head.hash != entry.hash:
                fault(row, "the feed's recorded head hash differs from this entry's hash")
            last_seq, last_hash, last_ts = seq, entry.hash, entry.ts
        if progress is not None:
            progress(report.entries)

    workers = threads or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lichen-verify") as pool:
        in_flight: deque[Future[list[_Row]]] = deque()
        for chunk in _decoded(store):
            in_flight.append(pool.submit(_check_signatures, chunk))
            if len(in_flight) > 2 * workers:
                follow(in_flight.popleft().result())
        while in_flight:
            follow(in_flight.popleft().result())
    if progress is not None:
        progress(report.entries)
    return report
