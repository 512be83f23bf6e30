"""An in-memory log with the store's rules: the reference peers' store.

:class:`MemoryLog` keeps entries in a dict, numbers them with a change
counter like ``LogStore`` (``last_change``, ``changes_since``), and checks
what the store checks on receipt: strict decoding, the signature, and the
chain against held neighbours (a different entry at a held seq, or a ``prev``
that contradicts a neighbour, is a fork and refused). It exists so the sync
protocol can be tested end to end without SQLite, and as an executable
specification of what a store-backed shell must provide: it answers a
session's reads (:class:`~agent.sync.commands.SyncLog`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..entry import DEFAULT_MAX_ENTRY_SIZE, Entry, decode_entry, verify_entry
from ..errors import ChainError, ForkError, OversizedEntry
from .plan import Holdings

__all__ = ["MemoryLog"]


class MemoryLog:
    """Entries by ``(author, seq)``, a change counter, and held ranges per feed.

    >>> log = MemoryLog()
    >>> log.last_change, len(log)
    (0, 0)

    :meth:`add` takes a decoded entry, verifies it and stores it (``True``), or
    returns ``False`` for the same bytes again; anything wrong raises the
    :class:`~agent.errors.EntryError` the SQLite store would raise.
    """

    def __init__(
        self, entries: Iterable[Entry] = (), *, max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE
    ) -> None:
        self.max_entry_size = max_entry_size
        self._entries: dict[tuple[bytes, int], Entry] = {}
        self._changes: list[tuple[bytes, int]] = []  # change n is at index n - 1
        self.holdings = Holdings()
        for entry in entries:
            self.add(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> set[tuple[bytes, int]]:
        """Every ``(author, seq)`` held."""
        return set(self._entries)

    def get(self, author: bytes, seq: int) -> Entry | None:
        return self._entries.get((author, seq))

    @property
    def last_change(self) -> int:
        """The change counter: one per stored entry, never reused."""
        return len(self._changes)

    def changes_since(self, change: int, upto: int | None = None) -> Iterator[tuple[bytes, int]]:
        """``(author, seq)`` of entries stored after ``change`` (up to ``upto``), in order."""
        end = len(self._changes) if upto is None else min(upto, len(self._changes))
        for index in range(max(0, change), end):
            yield self._changes[index]

    def receive(self, raw: bytes) -> bool:
        """Like ``LogStore.receive``: decode strictly, verify, store."""
        return self.add(decode_entry(raw, max_size=self.max_entry_size))

    def add(self, entry: Entry) -> bool:
        """Verify ``entry`` and store it; ``False`` if these exact bytes are held."""
        if len(entry.raw) > self.max_entry_size:
            raise OversizedEntry(
                f"entry is {len(entry.raw)} bytes; the cap is {self.max_entry_size}", entry.where
            )
        held = self._entries.get((entry.author, entry.seq))
        if held is not None:
            if held.raw == entry.raw:
                return False
            raise ForkError("fork: a different entry is held at this seq", entry.where)
        verify_entry(entry)
        before = self._entries.get((entry.author, entry.seq - 1))
        if before is not None:
            if entry.prev != before.hash:
                raise ForkError(f"fork: prev does not name the held entry {entry.seq - 1}")
            if entry.ts <= before.ts:
                raise ChainError("timestamp does not increase along the feed", entry.where)
        after = self._entries.get((entry.author, entry.seq + 1))
        if after is not None:
            if after.prev != entry.hash:
                raise ForkError(f"fork: the held entry {entry.seq + 1} names a different prev")
            if after.ts <= entry.ts:
                raise ChainError("timestamp is not below its successor's", entry.where)
        self._entries[(entry.author, entry.seq)] = entry
        self._changes.append((entry.author, entry.seq))
        self.holdings.add(entry.author, entry.seq)
        return True

    # ------------------------------------------------- SyncLog (a session's reads)

    def offer(self, since: int) -> tuple[int, list[tuple[bytes, int, int]]]:
        """The change counter, and per feed the span from the lowest to the highest
        seq of the entries stored after change ``since`` (all of them if 0), feeds
        sorted — one range per feed, as the SQLite store offers, however
        fragmented the holding (the provider skips the seqs it lacks)."""
        spans: dict[bytes, tuple[int, int]] = {}
        for author, seq in self.changes_since(since):
            low, high = spans.get(author, (seq, seq))
            spans[author] = (min(low, seq), max(high, seq))
        return self.last_change, [(a, *spans[a]) for a in sorted(spans)]

    def held(self, author: bytes, first: int, last: int) -> list[tuple[int, int]]:
        return self.holdings.held(author, first, last)

    def hashes(self, keys: Sequence[tuple[bytes, int]]) -> list[bytes | None]:
        return [entry.hash if (entry := self._entries.get(key)) else None for key in keys]

    def entries(self, author: bytes, first: int, last: int, limit: int) -> list[Entry]:
        out: list[Entry] = []
        for low, high in self.holdings.held(author, first, last):
            for seq in range(low, high + 1):
                out.append(self._entries[(author, seq)])
                if len(out) >= limit:
                    return out
        return out
