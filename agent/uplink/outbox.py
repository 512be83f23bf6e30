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

Most of a batch is read as **stretches** (``outbox_read``): a class's
entries in a change range, built by SQLite as one value — their heads and
bytes, as the payload carries them — with the bookkeeping as SQL aggregates,
no Python object per entry. What needs a look at single entries (the last
bytes of a batch, resends, acknowledged or skipped entries among the others,
the ``max_unacked`` bound about to cut, sparse classes) is read as rows
(``raw`` and three integers each), cut with column-wise C-level passes. Either
way the batch goes out as a :class:`~agent.uplink.wire.Batch` with its
payload ready.
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
from .outbox_read import (
    STRETCH_MAX_ENTRY,
    BatchDraft,
    PriorityClass,
    read_stretch,
    stretch_feeds,
)
from .wire import ACKS_COLLECTION, BATCH_ENVELOPE, BYTES_HEADS, Batch, batch_payload

__all__ = ["OutboxPass", "OutboxStats"]

_NEVER = 1 << 62  # the floor of a feed whose author is skipped: nothing of it goes
_MAX_ROWS = 8192  # rows read per query at most
_STRETCH_ENTRIES = 16  # a stretch is read when the room holds this many entries or more
_ROWS_AFTER_MISS = 8  # reads of a class that go as rows after a stretch did not fit it
_EMPTY = Batch(batch_payload(0, ()), 0)
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
class _Flight:
    """A batch handed out and not fully acknowledged."""

    at: float
    spans: list[tuple[PriorityClass, int, int]]  # (class, lo, hi): read changes lo < c ≤ hi
    feeds: dict[bytes, list[int]]  # author → [highest seq, bytes], until acknowledged


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
        self.classes: dict[int, PriorityClass] = {}
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
                cls = self.classes[priority] = PriorityClass(priority, ids, self._read_to)
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

    def _gap(self, cls: PriorityClass, limit: int) -> tuple[int, int]:
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

    def _order(self, limit: int) -> list[PriorityClass]:
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
        draft = BatchDraft(room=max_bytes - BATCH_ENVELOPE)
        for cls in self._order(limit):
            if not self._fill(cls, draft, limit):
                break
        if not draft.count:
            return _EMPTY
        self.flights.append(_Flight(self.clock(), draft.spans, draft.feeds))
        batch = Batch(batch_payload(draft.count, draft.pieces), draft.count)
        self.stats.batches += 1
        self.stats.entries += len(batch)
        self.stats.bytes += draft.size
        return batch

    def _fill(self, cls: PriorityClass, draft: BatchDraft, limit: int) -> bool:
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
            if self._stretch(cls, draft, stop):
                continue
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

    def _stretch(self, cls: PriorityClass, draft: BatchDraft, stop: int) -> bool:
        """Take ``cls``'s next stretch (up to ``stop``, sized to most of the room)
        as one value (``outbox_read``); False: read it as rows instead."""
        if cls.rows_for > 0:
            cls.rows_for -= 1
            return False
        room, lo = draft.room, cls.cursor
        if (
            room < _STRETCH_ENTRIES * self._per_entry
            or cls.resend_until > lo  # resent entries are counted by rows
            or self.unacked_bytes + room >= self.max_unacked  # the bound may cut
        ):
            return False
        hi = min(stop, lo + room * 15 // 16 // self._per_entry)
        conn = self.reader.connection
        longest = min(STRETCH_MAX_ENTRY, 4 * self._per_entry)  # a stretch ≤ 4× the room
        floor = self._floor.get(cls.feed, _NEVER)
        found = read_stretch(conn, cls, lo, hi, floor=floor, longest=longest)
        if found.entries:
            if len(found.pieces) > room:
                self._per_entry = max(1, len(found.pieces) // found.entries)
                return False
            feeds = [(cls.feed, 0, found.top, found.size, 0)]
            if not found.plain:  # other feeds among them (or acknowledged or long ones)
                feeds = stretch_feeds(conn, cls, lo, hi)
                if not self._floor.keys() >= {f[0] for f in feeds}:
                    self._learn({f[0] for f in feeds})
                if any(low <= self._floor[f] or n > longest for f, low, *_, n in feeds):
                    cls.rows_for = _ROWS_AFTER_MISS  # they need a look one by one
                    return False
                if len(feeds) == 1:
                    cls.feed = feeds[0][0]
            draft.count += found.entries
            draft.pieces.append(found.pieces)
            draft.room -= len(found.pieces)
            draft.size += found.size
            self.unacked_bytes += found.size
            for feed, _low, top, size, _longest in feeds:
                draft.add_feed(self._authors[feed], top, size)
            draft.add_span(cls, lo, hi)
            self._per_entry = max(1, len(found.pieces) // found.entries)
        if found.entries < (hi - lo) // 2:
            cls.rows_for = _ROWS_AFTER_MISS  # a sparse class: rows find it with fewer reads
        cls.cursor = hi
        cls.high = max(cls.high, hi)
        return True

    def _take(self, cls: PriorityClass, rows: list[Any], draft: BatchDraft) -> int | None:
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
        if n == 0 and not draft.count:
            n = 1  # an entry larger than a batch goes alone (the uplink refuses it by name)
        if n:
            del raws[n:], lengths[n:]
            draft.count += n
            draft.pieces += chain.from_iterable(zip(heads, raws, strict=False))
            taken = rows[:n] if n < len(rows) else rows
            self._record(cls, draft, taken, lengths, len(feeds) == 1)
            draft.room -= costs[n - 1]
        if n == len(rows):
            return None
        return int(rows[n - 1][1]) if n else 0

    def _record(
        self,
        cls: PriorityClass,
        draft: BatchDraft,
        rows: list[Any],
        lengths: list[int],
        one_feed: bool,
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
