"""The outbox: what goes to the cloud next, read straight from the log.

The log is the only outbox: nothing is copied into a queue. An
:class:`OutboxPass` walks the entries the cloud has not acknowledged — this
node's and those it carries for others — by local change counter (oldest
first), one cursor per priority class, so a scan never reads a row twice in a
pass. Each batch starts with the highest priority waiting, except every
``1/low_share``-th batch, which starts with the lowest one waiting: alarms go
first, and a backlog of low-priority readings still moves.

What was handed out and not yet acknowledged is remembered per batch, not per
entry (bounded by ``max_unacked`` bytes: beyond it the pass waits for
acknowledgements): when it went, the change-counter ranges its reading covered
in each class, and per feed the highest seq it carried and its bytes. A feed's
bytes are released once an acknowledgement reaches that seq; the batch is
forgotten once all of its feeds are. A batch still unacknowledged after
``resend_after`` moves its classes' cursors back to where its ranges begin:
reading again skips what is acknowledged (per feed, a seq floor) and the
ranges of batches still in flight, so exactly its unacknowledged entries come
again. A new pass — after every (re)connect — starts again from the
acknowledgements, so a crash or an outage never loses an entry: at worst one
is sent twice, and the cloud stores it once.

SQLite hands a batch over in one query per class (``raw`` and three integers
a row); sizes, the cut at ``max_bytes`` and the payload (precomputed CBOR
heads joined with the raw bytes, :func:`~agent.uplink.wire.batch_payload`) are
column-wise C-level passes, so the batch goes out as a
:class:`~agent.uplink.wire.Batch` with its payload ready.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from itertools import accumulate, chain
from operator import add, itemgetter
from typing import Any

from ..store.log_store import LogStore
from .config import UplinkSettings, parse_size, priority_of
from .wire import (
    ACKS_COLLECTION,
    BATCH_ENVELOPE,
    BYTES_HEADS,
    Batch,
    batch_payload,
)

__all__ = ["OutboxPass", "OutboxStats"]

_NEVER = 1 << 62  # the floor of a feed whose author is skipped: nothing of it goes
_MAX_ROWS = 8192  # rows read per query at most
_EMPTY = Batch()
_EMPTY.payload = batch_payload(0, ())
_RAW, _CHANGE, _FEED, _SEQ = map(itemgetter, range(4))  # the columns of a row read
_NOW = (
    "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'entries'), "
    "(SELECT count(*) FROM collections)"
)


@dataclass
class OutboxStats:
    batches: int = 0
    entries: int = 0
    bytes: int = 0
    resent: int = 0


@dataclass(eq=False)
class _Class:
    """One priority class: its collections and how far this pass has read."""

    priority: int
    collections: list[int]
    cursor: int
    high: int = 0  # no range of a batch in flight lies above this (so above it, no skipping)
    exhausted_at: int = -1  # the log's last change when a scan found nothing more
    resend_until: int = 0  # changes up to here were handed out before: again, they are resent
    sql: str = ""
    params: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.high = self.cursor

    def set_filter(self, others: list[int]) -> None:
        """The query reading this class: its collections, or — when shorter — not
        the ``others`` (which every collection a read can meet is one of, see
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
        self.sql = (
            "SELECT raw, change, feed, seq FROM entries WHERE change > ? AND change <= ?"
            f"{where if ids else ''} ORDER BY change LIMIT ?"
        )


@dataclass(eq=False)
class _Flight:
    """A batch handed out and not fully acknowledged."""

    at: float
    spans: list[tuple[_Class, int, int]]  # (class, lo, hi): its reading covered changes lo < c ≤ hi
    feeds: dict[bytes, list[int]]  # author → [highest seq, bytes], until acknowledged


@dataclass(eq=False)
class _Draft:
    """The batch being filled."""

    room: int  # bytes still free
    raws: list[bytes] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)  # head, raw, head, raw, …
    spans: list[tuple[_Class, int, int]] = field(default_factory=list)
    feeds: dict[bytes, list[int]] = field(default_factory=dict)
    size: int = 0  # bytes of the entries

    def add_feed(self, author: bytes, top: int, size: int) -> None:
        known = self.feeds.get(author)
        if known is None:
            self.feeds[author] = [top, size]
        else:
            known[0], known[1] = max(known[0], top), known[1] + size

    def add_span(self, cls: _Class, lo: int, hi: int) -> None:
        if self.spans and self.spans[-1][0] is cls and self.spans[-1][2] == lo:
            lo = self.spans.pop()[1]
        self.spans.append((cls, lo, hi))


@dataclass(eq=False)
class OutboxPass:
    """One pass over the unacknowledged entries (not thread-safe; the loop's thread)."""

    reader: LogStore
    settings: UplinkSettings
    skip_authors: Callable[[], Container[bytes]]
    clock: Callable[[], float] = time.monotonic
    stats: OutboxStats = field(default_factory=OutboxStats)

    def __post_init__(self) -> None:
        self.max_unacked = parse_size(self.settings.max_unacked)
        self.acked = self.reader.delivery.acked()
        self.flights: list[_Flight] = []  # in the order sent
        self.unacked_bytes = 0
        self.classes: dict[int, _Class] = {}
        self._known_collections = -1
        self._skip = self.skip_authors()
        self._authors: dict[int, bytes] = {}  # feed id → author
        self._ids: dict[bytes, int] = {}  # author → feed id
        self._floor: dict[int, int] = {}  # feed id → the seq up to which nothing is sent
        self._start = self._first_unacked_change()
        self._read_to = self._start  # where a class that appears later starts reading
        self._per_entry = 256  # bytes per entry, as last read
        self._turn = 0

    # ------------------------------------------------------------- planning

    def _first_unacked_change(self) -> int:
        """The change counter just below the oldest unacknowledged entry."""
        start: int | None = None
        conn = self.reader.connection
        for feed_id, author in conn.execute("SELECT id, author FROM feeds").fetchall():
            floor = self._know(int(feed_id), bytes(author))
            if floor == _NEVER:
                continue
            (low,) = conn.execute(
                "SELECT min(change) FROM entries WHERE feed = ? AND seq > ?", (feed_id, floor)
            ).fetchone()
            if low is not None and (start is None or low < start):
                start = low
        return (start - 1) if start is not None else self.reader.last_change()

    def _know(self, feed_id: int, author: bytes) -> int:
        self._authors[feed_id], self._ids[author] = author, feed_id
        floor = _NEVER if author in self._skip else self.acked.get(author, 0)
        self._floor[feed_id] = floor
        return floor

    def _learn(self, feed_ids: set[int]) -> None:
        for feed_id in [f for f in feed_ids if f not in self._floor]:
            (author,) = self.reader.connection.execute(
                "SELECT author FROM feeds WHERE id = ?", (feed_id,)
            ).fetchone()
            self._know(feed_id, bytes(author))

    def _refresh(self) -> int:
        """The log's last change now, with the classes brought up to date: every
        collection an entry up to that change is in (one snapshot for both)."""
        skip = self.skip_authors()
        if skip != self._skip:  # a cloud became trusted: its feed is never sent back
            self._skip = skip
            for feed_id, author in list(self._authors.items()):
                self._know(feed_id, author)
        conn = self.reader.connection
        limit, count = conn.execute(_NOW).fetchone()
        if count != self._known_collections:
            self._regroup(count)
        return int(limit or 0)

    def _regroup(self, count: int) -> None:
        """Group the collections into priority classes again (one was added)."""
        conn = self.reader.connection
        self._known_collections = count
        grouped: dict[int, list[int]] = {}
        every: list[int] = []
        for cid, name in conn.execute("SELECT id, name FROM collections ORDER BY id").fetchall():
            every.append(int(cid))
            if name != ACKS_COLLECTION:  # acknowledgements go from the cloud to boards, never back
                grouped.setdefault(priority_of(name, self.settings), []).append(int(cid))
        for priority, ids in grouped.items():
            cls = self.classes.get(priority)
            if cls is None:
                cls = self.classes[priority] = _Class(priority, ids, self._read_to)
            elif cls.collections != ids:
                # A collection new since the last look has all its entries above every
                # change read so far (each read stops at the change counter read with
                # the collections): the class goes on from its cursor.
                cls.collections, cls.exhausted_at = ids, -1
        for cls in self.classes.values():
            mine = set(cls.collections)
            cls.set_filter([c for c in every if c not in mine])

    def note_acks(self, acked: dict[bytes, int]) -> None:
        """Acknowledgements arrived: forget what they cover."""
        for author, seq in acked.items():
            if seq > self.acked.get(author, 0):
                self.acked[author] = seq
                feed_id = self._ids.get(author)
                if feed_id is not None and self._floor[feed_id] < seq:
                    self._floor[feed_id] = seq
        live = []
        for flight in self.flights:
            for author, (top, size) in list(flight.feeds.items()):
                if top <= self.acked.get(author, 0):
                    del flight.feeds[author]
                    self.unacked_bytes -= size
            if flight.feeds:
                live.append(flight)
        self.flights = live

    def _expire(self) -> None:
        """Batches unacknowledged for ``resend_after``: read their ranges again."""
        limit = self.clock() - self.settings.resend_after
        stale = 0
        for flight in self.flights:  # in the order sent: the oldest first
            if flight.at > limit:
                break
            stale += 1
        for flight in self.flights[:stale]:
            self.unacked_bytes -= sum(size for _top, size in flight.feeds.values())
            for cls, lo, hi in flight.spans:
                cls.cursor = min(cls.cursor, lo)
                cls.resend_until = max(cls.resend_until, hi)
                cls.exhausted_at = -1
        del self.flights[:stale]

    def _gap(self, cls: _Class, limit: int) -> tuple[int, int]:
        """Reading ``cls`` again after a resend: ``(stop, resume)`` — read up to
        the next range still in flight, go on after it (``resume`` 0: none)."""
        stop, resume = limit, 0
        for flight in self.flights:
            for c, lo, hi in flight.spans:
                if c is cls and hi > cls.cursor and lo < stop:
                    stop, resume = lo, hi
        if not resume:
            cls.high = cls.cursor  # nothing in flight above: read straight on
        return stop, resume

    # -------------------------------------------------------------- batches

    def _order(self, limit: int) -> list[_Class]:
        waiting = sorted(
            (c for c in self.classes.values() if c.exhausted_at != limit),
            key=lambda c: -c.priority,
        )
        share = self.settings.low_share
        self._turn += 1
        if share > 0 and len(waiting) > 1 and self._turn % max(1, round(1 / share)) == 0:
            waiting.insert(0, waiting.pop())  # the lowest priority starts this batch
        return waiting

    def next_batch(self, max_bytes: int) -> Batch:
        """Up to ``max_bytes`` (batch envelope included) of entries to send now, as
        a :class:`~agent.uplink.wire.Batch` (its payload ready); empty when
        nothing is waiting or ``max_unacked`` is reached."""
        self._expire()
        if self.unacked_bytes >= self.max_unacked:
            return _EMPTY
        limit = self._refresh()
        self._read_to = limit
        draft = _Draft(room=max_bytes - BATCH_ENVELOPE)
        for cls in self._order(limit):
            if not self._fill(cls, draft, limit):
                break
        if not draft.raws:
            return _EMPTY
        self.flights.append(_Flight(self.clock(), draft.spans, draft.feeds))
        batch = Batch(draft.raws)
        batch.payload = batch_payload(len(batch), draft.pieces)
        self.stats.batches += 1
        self.stats.entries += len(batch)
        self.stats.bytes += draft.size
        return batch

    def _fill(self, cls: _Class, draft: _Draft, limit: int) -> bool:
        """Add ``cls``'s next entries to ``draft``; False when the batch is full."""
        conn = self.reader.connection
        while True:
            stop, resume = (limit, 0) if cls.cursor >= cls.high else self._gap(cls, limit)
            if cls.cursor >= stop:
                if resume > cls.cursor:
                    cls.cursor = resume  # skip a range still in flight
                    continue
                cls.exhausted_at = limit
                return True
            if draft.room <= 0:
                return False
            want = min(_MAX_ROWS, draft.room // self._per_entry + 1)
            rows = conn.execute(cls.sql, (cls.cursor, stop, *cls.params, want)).fetchall()
            read_to = stop if len(rows) < want else rows[-1][1]
            if rows:
                taken = self._take(cls, rows, draft)
                if taken is not None:  # the batch is full
                    if taken:
                        cls.cursor = taken
                    cls.high = max(cls.high, cls.cursor)
                    return False
            cls.cursor = read_to
            cls.high = max(cls.high, read_to)
            if self.unacked_bytes >= self.max_unacked:
                return False

    def _take(self, cls: _Class, rows: list[Any], draft: _Draft) -> int | None:
        """Add what ``rows`` (raw, change, feed, seq) hold to send and fits; None
        when all of it went in, else the change of the last entry taken (0: none).
        Column-wise C-level passes only: no Python loop over the rows unless some
        may be acknowledged or skipped, or they come from several feeds."""
        feeds = set(map(_FEED, rows))
        if not self._floor.keys() >= feeds:
            self._learn(feeds)
        floor = self._floor
        if (
            min(map(_SEQ, rows)) <= floor[rows[0][2]]
            if len(feeds) == 1
            else any(floor[f] for f in feeds)
        ):  # some may be acknowledged already, or of a skipped author
            rows = [r for r in rows if r[3] > floor[r[2]]]
            if not rows:
                return None
        raws = list(map(_RAW, rows))
        lengths = list(map(len, raws))
        heads = list(map(BYTES_HEADS.__getitem__, lengths))
        costs = list(accumulate(map(add, lengths, map(len, heads))))
        self._per_entry = max(1, costs[-1] // len(costs))
        n = bisect_right(costs, draft.room)
        unacked = self.unacked_bytes
        if unacked + costs[-1] >= self.max_unacked:  # the max_unacked bound may cut first
            allowed = self.max_unacked - unacked
            n = min(n, bisect_left(list(accumulate(lengths)), allowed) + 1 if allowed > 0 else 0)
        if n == 0 and not draft.raws:
            n = 1  # an entry larger than a batch goes alone (the uplink refuses it by name)
        if n:
            del raws[n:], lengths[n:]
            draft.raws += raws
            draft.pieces += chain.from_iterable(zip(heads, raws, strict=False))
            taken = rows[:n] if n < len(rows) else rows
            self._record(cls, draft, taken, lengths, len(feeds) == 1)
            draft.room -= costs[n - 1]
        if n == len(rows):
            return None
        return int(rows[n - 1][1]) if n else 0

    def _record(
        self, cls: _Class, draft: _Draft, rows: list[Any], lengths: list[int], one_feed: bool
    ) -> None:
        """What taking ``rows`` (of ``lengths`` bytes) into ``draft`` means for the pass."""
        size = sum(lengths)
        draft.size += size
        self.unacked_bytes += size
        if cls.resend_until > cls.cursor:
            self.stats.resent += bisect_right(list(map(_CHANGE, rows)), cls.resend_until)
        if one_feed or min(map(_FEED, rows)) == max(map(_FEED, rows)):
            draft.add_feed(self._authors[rows[0][2]], max(map(_SEQ, rows)), size)
        else:
            for (_raw, _change, feed, seq), length in zip(rows, lengths, strict=True):
                draft.add_feed(self._authors[feed], seq, length)
        draft.add_span(cls, cls.cursor, rows[-1][1])
