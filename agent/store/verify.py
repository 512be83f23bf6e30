"""Full verification of a stored log: what ``lichen log verify`` runs.

For every stored entry, in feed order: the bytes decode as a canonical entry,
the signature verifies, the indexed columns (author, seq, timestamp,
collection) agree with the signed content, ``prev`` names the hash of the
stored entry before it and timestamps increase along the feed; each feed's
recorded head matches its head entry. Every fault is reported with the entry
it concerns; verification goes on after a fault so one report lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..entry import decode_entry, verify_entry
from ..errors import EntryError
from ..identity import NodeId
from .log_store import LogStore

__all__ = ["Fault", "VerifyReport", "verify_log"]


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


def verify_log(
    store: LogStore,
    *,
    progress: Callable[[int], None] | None = None,
    max_faults: int = 1000,
) -> VerifyReport:
    """Check every entry; ``progress(n)`` is called every 1024 entries."""
    report = VerifyReport()
    heads = {h.author: h for h in store.heads()}
    report.feeds = len(heads)
    last_author: bytes | None = None
    last_seq, last_hash, last_ts = 0, b"", 0

    def fault(where: str, problem: str) -> None:
        if len(report.faults) < max_faults:
            report.faults.append(Fault(where, problem))
        else:
            report.truncated = True

    for author, seq, ts, collection, raw in store.raw_rows():
        report.entries += 1
        if progress is not None and report.entries % 1024 == 0:
            progress(report.entries)
        where = f"{NodeId(author).short}…/{seq} ({collection})"
        if author != last_author:
            last_author, last_seq = author, 0
        try:
            entry = decode_entry(raw, max_size=len(raw))
            verify_entry(entry)
        except EntryError as exc:
            fault(where, exc.reason)
            last_seq = 0  # the chain cannot be followed through a broken entry
            continue
        if (entry.author, entry.seq, entry.ts, entry.collection) != (author, seq, ts, collection):
            fault(where, "stored columns (author, seq, ts, collection) disagree with the entry")
        if last_seq == seq - 1 and seq > 1:
            if entry.prev != last_hash:
                fault(where, f"prev does not match the hash of entry {seq - 1}")
            if entry.ts <= last_ts:
                fault(where, f"timestamp does not increase after entry {seq - 1}")
        head = heads.get(author)
        if head is not None and head.seq == seq and head.hash != entry.hash:
            fault(where, "the feed's recorded head hash differs from this entry's hash")
        last_seq, last_hash, last_ts = seq, entry.hash, entry.ts
    if progress is not None:
        progress(report.entries)
    return report
