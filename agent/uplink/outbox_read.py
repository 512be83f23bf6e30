"""How the outbox reads the log: a priority class's cursor and its queries, the
batch being filled, and reading a stretch of the log as one value.

Two ways to read a class (``docs/performance.md``, Uplink):

* **rows** — ``raw, change, feed, seq`` per entry, up to a row count, cut
  exactly at the batch's room in Python (:meth:`OutboxPass._take`); used for
  whatever needs a look at single entries: a batch's last few hundred bytes,
  a resend, acknowledged or skipped entries among the unacknowledged ones,
  the ``max_unacked`` bound about to cut, sparse classes.
* **a stretch** — everything of the class in a change-counter range, built by
  SQLite as one byte string (each entry's CBOR byte-string head, then its
  bytes: exactly what ``encode_entry_batch`` writes) with the bookkeeping as
  SQL aggregates (count, sizes, the range's feeds and seqs), so no Python
  object is made per entry and the GIL is released once per stretch, not once
  per row. :func:`read_stretch` says what it found; the pass takes it only if
  it fits the room and holds nothing acknowledged or skipped, else it reads
  the same range as rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from sqlite3 import Connection
from typing import NamedTuple

from .wire import BYTES_HEADS

__all__ = ["BatchDraft", "PriorityClass", "Stretch", "read_stretch", "stretch_feeds"]

#: the longest entry a stretch carries (a longer one goes as rows: the bytes dominate it)
STRETCH_MAX_ENTRY = 4095
_ONE = 1 << 40  # an entry counted in the bits above its bytes
_HEAD_WIDTH = "CASE WHEN length(raw) < 24 THEN 1 WHEN length(raw) < 256 THEN 2 ELSE 3 END"


@cache
def _heads_table() -> bytes:
    """Every byte-string head of 0…65535 bytes, each in a 3-byte slot (made once: 12 KiB)."""
    return b"".join(BYTES_HEADS[n].ljust(3, b"\0") for n in range(STRETCH_MAX_ENTRY + 1))


@dataclass(eq=False)
class PriorityClass:
    """One priority class: its collections and how far this pass has read."""

    priority: int
    collections: list[int]
    cursor: int
    high: int = 0  # no range of a batch in flight lies above this (so above it, no skipping)
    exhausted_at: int = -1  # the log's last change when a scan found nothing more
    resend_until: int = 0  # changes up to here were handed out before: again, they are resent
    rows_for: int = 0  # reads left that go as rows before a stretch is tried again
    feed: int = 0  # the feed id its last stretch was all of
    sql: str = ""
    stretch_sql: str = ""
    feeds_sql: str = ""
    params: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.high = self.cursor

    def set_filter(self, others: list[int]) -> None:
        """The queries reading this class: its collections, or — when shorter —
        not the ``others`` (which every collection a read can meet is one of, see
        ``OutboxPass._regroup``). Short lists are plain comparisons."""
        negate = len(others) < len(self.collections)
        ids = others if negate else self.collections
        if len(ids) <= 4:
            # `+`: walk the primary key from the cursor, not the collection index
            test = [f"+collection {'<>' if negate else '='} ?"] * len(ids)
            where = "".join(f" AND {t}" for t in test) if negate else f" AND ({' OR '.join(test)})"
        else:
            where = f" AND +collection {'NOT IN' if negate else 'IN'} ({','.join('?' * len(ids))})"
        self.params = tuple(ids)
        span = f"FROM entries WHERE change > ? AND change <= ?{where if ids else ''}"
        self.sql = f"SELECT raw, change, feed, seq {span} ORDER BY change LIMIT ?"
        # group_concat keeps the order it is fed in: a range of the primary key is
        # walked in its order (the `+` leaves no index to choose). SQLite 3.44's
        # `group_concat(… ORDER BY change)` would say so; the tests check it.
        head = f"substr(?2, 3 * length(raw) + 1, {_HEAD_WIDTH})"
        self.stretch_sql = (
            "SELECT CAST(group_concat(CASE WHEN length(raw) <= ?1 THEN "
            f"{head} || raw END, x'') AS BLOB), sum(length(raw) + {_ONE}), "
            f"sum(feed = ?3 AND seq > ?4 AND length(raw) <= ?1), max(seq) {span}"
        )  # every aggregate costs per entry: count and bytes are one sum; `span`'s `?` are ?5…
        self.feeds_sql = (
            f"SELECT feed, min(seq), max(seq), sum(length(raw)), max(length(raw)) {span} "
            "GROUP BY feed"
        )


class Stretch(NamedTuple):
    """What a class holds in a change range, as :func:`read_stretch` found it."""

    pieces: bytes  # head, bytes, head, bytes, … of every entry (empty when none)
    entries: int
    size: int  # bytes of the entries (their heads not counted)
    top: int  # the highest seq, when all of them are of the feed asked about
    plain: bool  # all of them are of that feed, above the seq asked about, not too long


def read_stretch(
    conn: Connection, cls: PriorityClass, lo: int, hi: int, *, floor: int, longest: int
) -> Stretch:
    """Everything of ``cls`` with ``lo < change ≤ hi`` as one byte string, and
    whether all of it is of feed ``cls.feed``, above seq ``floor`` and at most
    ``longest`` bytes an entry (≤ ``STRETCH_MAX_ENTRY``; longer ones are left
    out of the string, which so stays within ``longest`` bytes an entry; else
    :func:`stretch_feeds` tells what it holds)."""
    args = (min(longest, STRETCH_MAX_ENTRY), _heads_table(), cls.feed, floor, lo, hi, *cls.params)
    pieces, total, plain, top = conn.execute(cls.stretch_sql, args).fetchone()
    if not total:
        return Stretch(b"", 0, 0, 0, True)
    entries = total // _ONE  # a stretch holds far less than 2**40 bytes
    return Stretch(pieces or b"", entries, total - entries * _ONE, top, plain == entries)


Feed = tuple[int, int, int, int, int]  # (feed id, lowest seq, highest seq, bytes, longest)


def stretch_feeds(conn: Connection, cls: PriorityClass, lo: int, hi: int) -> list[Feed]:
    """Per feed in that range: (feed id, lowest seq, highest seq, bytes, longest)."""
    return list(conn.execute(cls.feeds_sql, (lo, hi, *cls.params)))


@dataclass(eq=False)
class BatchDraft:
    """The batch being filled."""

    room: int  # bytes still free
    count: int = 0  # entries in it
    pieces: list[bytes] = field(default_factory=list)  # head, raw, head, raw, … (or stretches)
    spans: list[tuple[PriorityClass, int, int]] = field(default_factory=list)
    feeds: dict[bytes, list[int]] = field(default_factory=dict)
    size: int = 0  # bytes of the entries

    def add_feed(self, author: bytes, top: int, size: int) -> None:
        known = self.feeds.get(author)
        if known is None:
            self.feeds[author] = [top, size]
        else:
            known[0], known[1] = max(known[0], top), known[1] + size

    def add_span(self, cls: PriorityClass, lo: int, hi: int) -> None:
        if self.spans and self.spans[-1][0] is cls and self.spans[-1][2] == lo:
            lo = self.spans.pop()[1]
        self.spans.append((cls, lo, hi))
