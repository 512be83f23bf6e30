"""The outbox: what goes to the cloud next, read straight from the log.

The log is the only outbox: nothing is copied into a queue. An
:class:`OutboxPass` walks the entries the cloud has not acknowledged — this
node's and those it carries for others — by local change counter (oldest
first), one cursor per priority class, so a scan never reads a row twice in a
pass. Each batch starts with the highest priority waiting, except every
``1/low_share``-th batch, which starts with the lowest one waiting: alarms go
first, and a backlog of low-priority readings still moves.

What was handed out and not yet acknowledged is remembered (bounded by
``max_unacked`` bytes: beyond it the pass waits for acknowledgements); an entry
comes again when no acknowledgement covered it within ``resend_after``. A new
pass — after every (re)connect — starts again from the acknowledgements, so a
crash or an outage never loses an entry: at worst one is sent twice, and the
cloud stores it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import NamedTuple

from ..store.log_store import LogStore
from .config import UplinkSettings, parse_size, priority_of
from .wire import ACKS_COLLECTION, BATCH_ENVELOPE, entry_cost

__all__ = ["OutboxPass", "OutboxStats"]

_SCAN = 512  # rows read per query


@dataclass
class OutboxStats:
    batches: int = 0
    entries: int = 0
    bytes: int = 0
    resent: int = 0


@dataclass
class _Class:
    """One priority class: its collections and how far this pass has read."""

    priority: int
    collections: list[int]
    cursor: int
    exhausted_at: int = -1  # the log's last change when a scan found nothing more


class _Sent(NamedTuple):
    at: float
    change: int
    size: int


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
        self.acked = self.reader.acked()
        self.sent: dict[tuple[bytes, int], _Sent] = {}
        self.unacked_bytes = 0
        self.classes: dict[int, _Class] = {}
        self._known_collections = -1
        self._start = self._first_unacked_change()
        self._turn = 0

    # ------------------------------------------------------------- planning

    def _first_unacked_change(self) -> int:
        """The change counter just below the oldest unacknowledged entry."""
        start: int | None = None
        skip = self.skip_authors()
        for feed_id, author in self.reader.connection.execute("SELECT id, author FROM feeds"):
            if bytes(author) in skip:
                continue
            (low,) = self.reader.connection.execute(
                "SELECT min(change) FROM entries WHERE feed = ? AND seq > ?",
                (feed_id, self.acked.get(bytes(author), 0)),
            ).fetchone()
            if low is not None and (start is None or low < start):
                start = low
        return (start - 1) if start is not None else self.reader.last_change()

    def _refresh_classes(self) -> None:
        rows = self.reader.connection.execute("SELECT id, name FROM collections").fetchall()
        if len(rows) == self._known_collections:
            return
        self._known_collections = len(rows)
        grouped: dict[int, list[int]] = {}
        for cid, name in rows:
            if name == ACKS_COLLECTION:
                continue  # acknowledgements go from the cloud to boards, never back
            grouped.setdefault(priority_of(name, self.settings), []).append(int(cid))
        for priority, ids in grouped.items():
            cls = self.classes.get(priority)
            if cls is None:
                self.classes[priority] = _Class(priority, sorted(ids), self._start)
            elif cls.collections != sorted(ids):
                # a new collection: read its class again from the pass start
                cls.collections, cls.cursor, cls.exhausted_at = sorted(ids), self._start, -1

    def note_acks(self, acked: dict[bytes, int]) -> None:
        """Acknowledgements arrived: forget what they cover."""
        self.acked.update({a: s for a, s in acked.items() if s > self.acked.get(a, 0)})
        for key in [k for k in self.sent if k[1] <= self.acked.get(k[0], 0)]:
            self.unacked_bytes -= self.sent.pop(key).size

    def _expire(self) -> None:
        """Entries unacknowledged for ``resend_after``: read them again."""
        limit = self.clock() - self.settings.resend_after
        stale = []
        for key, sent in self.sent.items():  # in the order sent: the oldest first
            if sent.at > limit:
                break
            stale.append(key)
        if not stale:
            return
        first = min(self.sent[k].change for k in stale) - 1
        for key in stale:
            self.unacked_bytes -= self.sent.pop(key).size
            self.stats.resent += 1
        for cls in self.classes.values():
            if cls.cursor > first:
                cls.cursor, cls.exhausted_at = first, -1

    # -------------------------------------------------------------- batches

    def _order(self) -> list[_Class]:
        waiting = sorted(
            (c for c in self.classes.values() if c.exhausted_at != self.reader.last_change()),
            key=lambda c: -c.priority,
        )
        share = self.settings.low_share
        self._turn += 1
        if share > 0 and len(waiting) > 1 and self._turn % max(1, round(1 / share)) == 0:
            waiting.insert(0, waiting.pop())  # the lowest priority starts this batch
        return waiting

    def next_batch(self, max_bytes: int) -> list[bytes]:
        """Up to ``max_bytes`` (batch envelope included) of entries to send now;
        empty when nothing is waiting or ``max_unacked`` is reached."""
        self._expire()
        if self.unacked_bytes >= self.max_unacked:
            return []
        self._refresh_classes()
        skip = self.skip_authors()
        batch: list[bytes] = []
        size = BATCH_ENVELOPE
        for cls in self._order():
            size = self._fill(cls, batch, size, max_bytes, skip)
            if size < 0:
                break
        if batch:
            self.stats.batches += 1
            self.stats.entries += len(batch)
            self.stats.bytes += sum(len(b) for b in batch)
        return batch

    def _fill(
        self, cls: _Class, batch: list[bytes], size: int, max_bytes: int, skip: Container[bytes]
    ) -> int:
        """Add ``cls``'s next entries to ``batch``; returns the new size, or -1 when full."""
        conn = self.reader.connection
        marks = ",".join("?" * len(cls.collections))
        last = self.reader.last_change()
        now, sent, acked = self.clock(), self.sent, self.acked
        while True:
            rows = conn.execute(
                "SELECT e.change, f.author, e.seq, e.raw FROM entries e "
                "JOIN feeds f ON f.id = e.feed "
                # `+`: walk the primary key from the cursor, not the collection index
                f"WHERE e.change > ? AND +e.collection IN ({marks}) ORDER BY e.change LIMIT ?",
                (cls.cursor, *cls.collections, _SCAN),
            ).fetchall()
            if not rows:
                cls.exhausted_at = last
                return size
            for change, author, seq, raw in rows:
                key = (author, seq)
                if author in skip or seq <= acked.get(author, 0) or key in sent:
                    cls.cursor = change
                    continue
                length = len(raw)
                cost = entry_cost(length)
                if (size + cost > max_bytes or self.unacked_bytes >= self.max_unacked) and batch:
                    return -1
                batch.append(raw)
                size += cost
                sent[key] = _Sent(now, change, length)
                self.unacked_bytes += length
                cls.cursor = change
            if len(rows) < _SCAN:
                cls.exhausted_at = last
                return size
