"""Batching readings into entries: one entry per collection per flush interval.

:class:`ReadingBatcher` holds readings between flushes, column-wise (no object
per reading). Sensor threads call :meth:`~ReadingBatcher.add`; the agent's
flush task calls :meth:`~ReadingBatcher.take_all` every interval (or
:meth:`~ReadingBatcher.take_urgent` at once after an urgent reading) and turns
each collection's readings into drafts with :func:`drafts_for`. No I/O here.

Memory is bounded: when one collection holds ``max_pending`` readings (the
writer stalled, a sensor floods), its oldest tenth is dropped and counted —
never silently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from . import encoding
from .readings import Columns, FieldSpec, Value, encode_columns
from .store.log_store import Draft

__all__ = ["PendingBatch", "ReadingBatcher", "drafts_for"]

# Bytes an entry adds around its body: envelope, author, prev, signature, seq, ts.
ENTRY_OVERHEAD = 200


@dataclass(slots=True)
class PendingBatch:
    collection: str
    fields: Mapping[str, FieldSpec]
    columns: Columns = field(default_factory=Columns)
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.columns)

    def newest(self) -> tuple[int, dict[str, bool | int | float | str], str | None]:
        """``(ts_ms, values, quality)`` of the last reading (the batch is not empty)."""
        last = len(self.columns) - 1
        values = {
            name: value
            for name, column in self.columns.columns.items()
            if (value := column[last]) is not None
        }
        return self.columns.times[last], values, self.columns.quality.get(last)


class ReadingBatcher:
    """Per-collection columns of readings waiting for the next flush.

    ``on_urgent`` is called (on the adding thread, outside the lock) after each
    urgent reading: the agent's cue to flush at once."""

    def __init__(
        self, max_pending: int = 10_000, *, on_urgent: Callable[[], None] | None = None
    ) -> None:
        self.max_pending = max_pending
        self.on_urgent = on_urgent
        self._pending: dict[str, PendingBatch] = {}
        self._lock = threading.Lock()
        self._urgent: set[str] = set()
        self.total_added = 0
        self.total_dropped = 0

    def add(
        self,
        collection: str,
        ts_ms: int,
        values: Mapping[str, Value],
        fields: Mapping[str, FieldSpec],
        *,
        quality: str | None = None,
        urgent: bool = False,
    ) -> bool:
        """Queue one reading; return True if it is urgent (flush now)."""
        with self._lock:
            batch = self._pending.get(collection)
            if batch is None:
                batch = self._pending[collection] = PendingBatch(collection, fields)
            else:
                batch.fields = fields  # the latest description (a device may describe itself)
            if len(batch.columns) >= self.max_pending:
                victims = max(1, self.max_pending // 10)
                batch.columns.drop_oldest(victims)
                batch.dropped += victims
                self.total_dropped += victims
            batch.columns.add(ts_ms, values, quality)
            self.total_added += 1
            if urgent:
                self._urgent.add(collection)
        if urgent and self.on_urgent is not None:
            self.on_urgent()
        return urgent

    def take_all(self) -> list[PendingBatch]:
        """Everything pending, emptied out (collections in a stable order)."""
        with self._lock:
            batches = [b for b in self._pending.values() if len(b)]
            self._pending = {}
            self._urgent.clear()
        return sorted(batches, key=lambda b: b.collection)

    def take_urgent(self) -> list[PendingBatch]:
        """Only the collections holding an urgent reading (with all their readings)."""
        with self._lock:
            batches = [self._pending.pop(c) for c in sorted(self._urgent) if c in self._pending]
            self._urgent.clear()
        return batches

    def put_back(self, batches: Sequence[PendingBatch]) -> None:
        """Return batches that could not be written (the writer failed) so the next
        flush retries them, ahead of anything that arrived since; the cap applies."""
        with self._lock:
            for batch in batches:
                newer = self._pending.get(batch.collection)
                merged = batch.columns
                if newer is not None:
                    for i, ts in enumerate(newer.columns.times):
                        merged.add(
                            ts,
                            {n: c[i] for n, c in newer.columns.columns.items() if c[i] is not None},
                            newer.columns.quality.get(i),
                        )
                    batch.dropped += newer.dropped
                excess = len(merged) - self.max_pending
                if excess > 0:
                    merged.drop_oldest(excess)
                    batch.dropped += excess
                    self.total_dropped += excess
                self._pending[batch.collection] = batch

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._pending.values())


def drafts_for(batch: PendingBatch, max_entry_size: int) -> tuple[list[Draft], int]:
    """Drafts holding ``batch``'s readings, split so each entry fits ``max_entry_size``,
    and how many readings were left out because one alone does not fit an entry."""
    limit = max_entry_size - ENTRY_OVERHEAD - len(batch.collection.encode())
    out: list[Draft] = []
    too_large = 0

    def split(columns: Columns) -> None:
        nonlocal too_large
        body = encode_columns(columns, batch.fields)
        encoded = encoding.dumps(body, where="batch")
        if len(encoded) <= limit:
            out.append(Draft(batch.collection, body, encoded=encoded))
        elif len(columns) == 1:
            too_large += 1
        else:
            head, tail = columns.split(len(columns) // 2)
            split(head)
            split(tail)

    split(batch.columns.sorted_by_time())
    return out, too_large
