"""Batching readings into entries: one entry per collection per flush interval.

:class:`ReadingBatcher` holds readings between flushes. Sensor threads call
:meth:`~ReadingBatcher.add`; the agent's flush task calls
:meth:`~ReadingBatcher.take_all` every interval (or at once after an urgent
reading) and turns each collection's readings into drafts with
:func:`drafts_for`. No I/O here: the batcher is a locked dictionary.

Memory is bounded: past ``max_pending`` readings in one collection (the writer
stalled, a sensor floods), the oldest are dropped and counted, never silently.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import encoding
from .readings import FieldSpec, Reading, encode_batch
from .store.log_store import Draft

__all__ = ["PendingBatch", "ReadingBatcher", "drafts_for"]

# Bytes an entry adds around its body: envelope, author, prev, signature, seq, ts.
ENTRY_OVERHEAD = 200


@dataclass(slots=True)
class PendingBatch:
    collection: str
    fields: Mapping[str, FieldSpec]
    readings: deque[Reading] = field(default_factory=deque)
    dropped: int = 0


class ReadingBatcher:
    """Per-collection queues of readings waiting for the next flush."""

    def __init__(self, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, PendingBatch] = {}
        self._lock = threading.Lock()
        self._urgent: set[str] = set()
        self.total_added = 0
        self.total_dropped = 0

    def add(self, collection: str, reading: Reading, fields: Mapping[str, FieldSpec]) -> bool:
        """Queue ``reading``; return True if it is urgent (flush now)."""
        with self._lock:
            batch = self._pending.get(collection)
            if batch is None:
                batch = self._pending[collection] = PendingBatch(collection, fields)
            if len(batch.readings) >= self.max_pending:
                batch.readings.popleft()
                batch.dropped += 1
                self.total_dropped += 1
            batch.readings.append(reading)
            self.total_added += 1
            if reading.urgent:
                self._urgent.add(collection)
        return reading.urgent

    def take_all(self) -> list[PendingBatch]:
        """Everything pending, emptied out (collections in a stable order)."""
        with self._lock:
            batches = [b for b in self._pending.values() if b.readings]
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
        """Return batches that could not be written (the writer failed), oldest
        first, so the next flush retries them; the cap still applies."""
        for batch in batches:
            for reading in batch.readings:
                self.add(batch.collection, reading, batch.fields)

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(b.readings) for b in self._pending.values())


def drafts_for(batch: PendingBatch, max_entry_size: int) -> list[Draft]:
    """Drafts holding ``batch``'s readings, split so each entry fits ``max_entry_size``."""
    limit = max_entry_size - ENTRY_OVERHEAD - len(batch.collection.encode())
    out: list[Draft] = []

    def split(readings: list[Reading]) -> None:
        body = encode_batch(readings, batch.fields)
        if len(encoding.dumps(body)) <= limit or len(readings) == 1:
            out.append(Draft(batch.collection, body))
            return
        middle = len(readings) // 2
        split(readings[:middle])
        split(readings[middle:])

    split(list(batch.readings))
    return out
