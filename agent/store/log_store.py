"""The log store: every entry this node holds, in one SQLite file.

:class:`LogStore` is synchronous and owns one connection. The agent drives
writes through :class:`~agent.store.writer.LogWriter` (one thread, group
commit); the CLI uses a store directly. Both go through :meth:`LogStore.batch`,
so several writes share one transaction and one fsync.

Rules enforced on every write:

* ``(author, seq)`` is unique. The same bytes again are a no-op
  (:attr:`InsertOutcome.DUPLICATE`); *different* bytes are a fork: the newcomer is
  recorded in ``forks`` as evidence and refused with :class:`ForkError`.
* Where the neighbours ``seq-1`` / ``seq+1`` are held, ``prev`` must name the
  stored neighbour's hash (else a fork) and timestamps must increase (else
  :class:`ChainError`). Gaps are allowed: entries may arrive in any order.
* Entries below a feed's prune watermark are not taken back
  (:attr:`InsertOutcome.PRUNED`).

Every write operation checks everything before its first write, so a refused
operation leaves no trace but its fork evidence, without a savepoint. Inside a
transaction, feed heads and counters are kept in memory and written once at
commit: the common case costs one ``INSERT`` per entry.
"""

from __future__ import annotations

import enum
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .. import encoding
from ..clock import HybridClock
from ..entry import (
    DEFAULT_MAX_ENTRY_SIZE,
    Entry,
    decode_entry,
    sign_entry,
    verify_entry,
)
from ..errors import ChainError, ForkError, OversizedEntry, StoreError
from ..identity import Identity
from .connection import map_sqlite_errors, open_database
from .delivery import Delivery
from .documents import DocumentIndex
from .pruning import prune_feed
from .reads import FeedHead, ForkRecord, LogReads
from .replication import Replication

__all__ = ["Draft", "FeedHead", "ForkRecord", "InsertOutcome", "LogStore"]

T = TypeVar("T")


class InsertOutcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    PRUNED = "pruned"


@dataclass(frozen=True, slots=True)
class Draft:
    """An entry of our own feed before it has a seq, a timestamp and a signature.

    ``encoded`` may carry ``encoding.dumps(body)`` computed ahead of time (see
    :meth:`encoded_copy`), so the writer's thread only signs and stores."""

    collection: str
    body: Any
    doc_id: str | None = None
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    def encoded_copy(self) -> Draft:
        """This draft with its body encoded now (raises EncodingError for a bad body)."""
        if self.encoded is not None:
            return self
        return Draft(
            self.collection, self.body, self.doc_id, encoding.dumps(self.body, where="body")
        )


@dataclass(slots=True)
class _FeedState:
    """A feed as seen inside the current transaction (head and pending counts)."""

    feed_id: int
    seq: int
    hash: bytes
    ts: int
    low_seq: int
    entries: int = 0
    bytes: int = 0


class LogStore(LogReads):
    """One node's log database. Not thread-safe: one store per thread.

    Its reads and the writes every entry goes through are here; the rest is in
    named parts over the same connection (and transaction):
    :attr:`replication` (offers, gaps, raw ranges, checkpoints),
    :attr:`delivery` (holes, contiguity, the cloud's acknowledgements, drops)
    and :attr:`documents` (the document view)."""

    def __init__(
        self,
        path: Path,
        *,
        durability: str = "normal",
        max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE,
    ) -> None:
        self.path = path
        self.max_entry_size = max_entry_size
        self._conn = open_database(path, durability=durability)
        self._collections: dict[str, int] = {}
        self._feeds: dict[bytes, _FeedState] | None = None
        self._collection_counts: defaultdict[int, int] = defaultdict(int)
        self.documents = DocumentIndex(self._conn, self._collection_id)
        self.replication = Replication(self._conn, self._stream)
        self.delivery = Delivery(self._conn, self._stream)
        #: the entries the last committed :meth:`batch` stored, per author
        self.last_stored: dict[bytes, int] = {}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ transactions

    def batch(self, operations: Sequence[Callable[[], T]]) -> list[T | ValueError]:
        """Run ``operations`` in one transaction. An operation refused for bad
        input — :class:`EntryError` or another ``ValueError`` naming the bad field —
        wrote nothing; its error is returned in its place (and fork evidence
        recorded). Any other failure rolls back the whole batch and is raised."""
        results: list[T | ValueError] = []
        conn = self._conn
        with map_sqlite_errors(self.path, "writing to the log"):
            conn.execute("BEGIN IMMEDIATE")
            self._feeds = {}
            self._collection_counts.clear()
            self.last_stored = {}
            try:
                for operation in operations:
                    try:
                        results.append(operation())
                    except ValueError as exc:
                        if isinstance(exc, ForkError) and isinstance(exc.evidence, Entry):
                            self._record_fork(exc.evidence, exc.reason)
                        results.append(exc)
                self._write_counters()
                conn.execute("COMMIT")
                self.last_stored = {a: s.entries for a, s in self._feeds.items() if s.entries}
            except BaseException:
                self._collections.clear()  # ids minted in this transaction are gone
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._feeds = None
        return results

    def _single(self, operation: Callable[[], T]) -> T:
        (result,) = self.batch([operation])
        if isinstance(result, ValueError):
            raise result
        return result

    def _state(self, author: bytes) -> _FeedState | None:
        feeds = self._feeds
        if feeds is None:
            raise StoreError("a write operation ran outside LogStore.batch()")
        state = feeds.get(author)
        if state is None:
            row = self._conn.execute(
                "SELECT id, head_seq, head_hash, head_ts, low_seq FROM feeds WHERE author = ?",
                (author,),
            ).fetchone()
            if row is not None:
                state = feeds[author] = _FeedState(*row)
        return state

    def _write_counters(self) -> None:
        for state in (self._feeds or {}).values():
            if state.entries:
                self._conn.execute(
                    "UPDATE feeds SET head_seq = ?, head_hash = ?, head_ts = ?, "
                    "entries = entries + ?, bytes = bytes + ? WHERE id = ?",
                    (state.seq, state.hash, state.ts, state.entries, state.bytes, state.feed_id),
                )
        if self._collection_counts:
            self._conn.executemany(
                "UPDATE collections SET entries = entries + ? WHERE id = ?",
                [(count, cid) for cid, count in self._collection_counts.items()],
            )

    # ------------------------------------------------------------------ writes

    def append(
        self, identity: Identity, clock: HybridClock, drafts: Sequence[Draft]
    ) -> list[Entry]:
        """Sign ``drafts`` as the next entries of our own feed and store them."""
        return self._single(lambda: self.append_now(identity, clock, drafts))

    def insert(self, entry: Entry) -> InsertOutcome:
        """Store a foreign entry whose signature the caller has verified."""
        return self._single(lambda: self.insert_now(entry))

    def receive(self, raw: bytes) -> InsertOutcome:
        """Take an entry as it arrived from elsewhere (a peer, a bundle): decode it
        strictly, verify its signature, then store it. Anything wrong raises an
        :class:`EntryError` naming the problem, and nothing stored changes."""
        entry = decode_entry(raw, max_size=self.max_entry_size)
        verify_entry(entry)
        return self.insert(entry)

    def append_now(
        self, identity: Identity, clock: HybridClock, drafts: Sequence[Draft]
    ) -> list[Entry]:
        """Inside a :meth:`batch`: sign every draft, then store them all (or none).
        The head is read inside the transaction, so several processes may append
        to one feed safely."""
        state = self._state(identity.node_id.key)
        seq, prev = (state.seq, state.hash) if state else (0, None)
        if state:
            clock.observe(state.ts)
        entries: list[Entry] = []
        written: dict[tuple[str, str], bytes] = {}  # documents written by earlier drafts
        for draft in drafts:
            base: tuple[bytes, ...] = ()
            if draft.doc_id is not None:
                key = (draft.collection, draft.doc_id)
                base = (written[key],) if key in written else self.documents.leaf_hashes(*key)
            entry = sign_entry(
                identity,
                seq=seq + 1,
                prev=prev,
                ts=clock.now(),
                collection=draft.collection,
                body=draft.body,
                doc_id=draft.doc_id,
                base=base,
                max_size=self.max_entry_size,
                encoded_body=draft.encoded,
            )
            if draft.doc_id is not None:
                written[(draft.collection, draft.doc_id)] = entry.hash
            entries.append(entry)
            seq, prev = entry.seq, entry.hash
        for entry in entries:
            self._store(entry)
        return entries

    def insert_now(self, entry: Entry) -> InsertOutcome:
        """Inside a :meth:`batch`: store one verified foreign entry (see module rules)."""
        if len(entry.raw) > self.max_entry_size:
            raise OversizedEntry(
                f"entry is {len(entry.raw)} bytes; the cap is {self.max_entry_size}", entry.where
            )
        state = self._state(entry.author)
        if state is None:
            self._store(entry)
            return InsertOutcome.STORED
        if entry.seq < state.low_seq:
            return InsertOutcome.PRUNED
        if entry.seq == state.seq + 1:  # the common case: the next entry of the feed
            self._check_follows(entry, state.hash, state.ts)
            self._store(entry)
            return InsertOutcome.STORED
        feed_id = state.feed_id
        stored = self._raw_at(feed_id, entry.seq)
        if stored is not None:
            if stored == entry.raw:
                return InsertOutcome.DUPLICATE
            self._fork(entry, "a different entry is stored at this seq")
        before = self._raw_at(feed_id, entry.seq - 1)
        if before is not None:
            predecessor = decode_entry(before, max_size=len(before), strict=False)
            self._check_follows(entry, predecessor.hash, predecessor.ts)
        after = self._raw_at(feed_id, entry.seq + 1)
        if after is not None:
            successor = decode_entry(after, max_size=len(after), strict=False)
            if successor.prev != entry.hash:
                self._fork(entry, f"the stored entry {entry.seq + 1} names a different prev")
            if successor.ts <= entry.ts:
                raise ChainError("timestamp is not below its successor's", entry.where)
        self._store(entry)
        return InsertOutcome.STORED

    def _check_follows(self, entry: Entry, prev_hash: bytes, prev_ts: int) -> None:
        """``entry`` may follow the stored entry before it (hash ``prev_hash``, at ``prev_ts``)."""
        if entry.prev != prev_hash:
            self._fork(entry, f"prev does not name the stored entry {entry.seq - 1}")
        if entry.ts <= prev_ts:
            raise ChainError("timestamp does not increase along the feed", entry.where)

    def _raw_at(self, feed_id: int, seq: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT raw FROM entries WHERE feed = ? AND seq = ?", (feed_id, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _fork(self, entry: Entry, reason: str) -> NoReturn:
        raise ForkError(
            f"fork: {reason}; recorded as evidence, not stored", entry.where, evidence=entry
        )

    def _record_fork(self, entry: Entry, reason: str) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO forks (author, seq, hash, raw, reason, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry.author, entry.seq, entry.hash, entry.raw, reason, time.time_ns() // 10**6),
        )

    def _collection_id(self, name: str, create: bool = True) -> int | None:
        cid = self._collections.get(name)
        if cid is None:
            row = self._conn.execute(
                "SELECT id FROM collections WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                if not create:
                    return None
                cur = self._conn.execute("INSERT INTO collections (name) VALUES (?)", (name,))
                row = (cur.lastrowid,)
            cid = self._collections[name] = int(row[0])
        return cid

    def _store(self, entry: Entry) -> None:
        """The only place entries are written (after every check has passed)."""
        cid = self._collection_id(entry.collection)
        state = self._state(entry.author)
        if state is None:
            cur = self._conn.execute(
                "INSERT INTO feeds (author, head_seq, head_hash, head_ts) VALUES (?, ?, ?, ?)",
                (entry.author, entry.seq, entry.hash, entry.ts),
            )
            state = _FeedState(int(cur.lastrowid or 0), entry.seq, entry.hash, entry.ts, 1)
            if self._feeds is not None:  # always, inside batch(); _state() checked it
                self._feeds[entry.author] = state
        cur = self._conn.execute(
            "INSERT INTO entries (feed, seq, ts, collection, raw) VALUES (?, ?, ?, ?, ?)",
            (state.feed_id, entry.seq, entry.ts, cid, entry.raw),
        )
        if entry.seq > state.seq:
            state.seq, state.hash, state.ts = entry.seq, entry.hash, entry.ts
        state.entries += 1
        state.bytes += len(entry.raw)
        self._collection_counts[cid or 0] += 1
        if entry.doc_id is not None:
            self.documents.add_version(cur.lastrowid, cid, entry)

    def feed_bytes_now(self, author: bytes) -> int:
        """Inside a :meth:`batch`: the bytes of ``author``'s entries held, with
        those stored earlier in this transaction."""
        row = self._conn.execute("SELECT bytes FROM feeds WHERE author = ?", (author,)).fetchone()
        state = (self._feeds or {}).get(author)
        return (0 if row is None else int(row[0])) + (0 if state is None else state.bytes)

    def prune(self, author: bytes, below_seq: int) -> int:
        """Delete the feed's entries with ``seq < below_seq`` (keeping current
        document versions) and refuse them from now on. Returns how many went."""
        return self._single(lambda: self.prune_now(author, below_seq))

    def prune_now(self, author: bytes, below_seq: int) -> int:
        """Inside a :meth:`batch`: see :meth:`prune` (:mod:`agent.store.pruning`)."""
        count, below = prune_feed(self._conn, author, below_seq)
        state = (self._feeds or {}).get(author)
        if state is not None and below is not None:
            state.low_seq = below
        return count
