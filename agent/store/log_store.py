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

Reads stream from cursors and never load a whole log into memory.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from ..clock import HybridClock
from ..entry import DEFAULT_MAX_ENTRY_SIZE, Entry, decode_entry, entry_hash, sign_entry
from ..errors import ChainError, EntryError, ForkError
from ..identity import Identity, NodeId
from .connection import map_sqlite_errors, open_database
from .documents import DocumentIndex

__all__ = ["Draft", "FeedHead", "ForkRecord", "InsertOutcome", "LogStore"]

T = TypeVar("T")
_FETCH = 256


class InsertOutcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    PRUNED = "pruned"


@dataclass(frozen=True, slots=True)
class Draft:
    """An entry of our own feed before it has a seq, a timestamp and a signature."""

    collection: str
    body: Any
    doc_id: str | None = None


@dataclass(frozen=True, slots=True)
class FeedHead:
    """What we hold of one feed: its highest ``(seq, hash)`` and counts."""

    author: bytes
    seq: int
    hash: bytes
    ts: int
    low_seq: int
    entries: int
    bytes: int

    @property
    def node_id(self) -> NodeId:
        return NodeId(self.author)


@dataclass(frozen=True, slots=True)
class ForkRecord:
    author: bytes
    seq: int
    hash: bytes
    reason: str
    seen_at_ms: int


class LogStore:
    """One node's log database. Not thread-safe: one store per thread."""

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
        self.documents = DocumentIndex(self._conn, self._collection_id)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    def batch(self, operations: Sequence[Callable[[], T]]) -> list[T | EntryError]:
        """Run ``operations`` in one transaction. An operation that raises
        :class:`EntryError` is rolled back to its own savepoint and its error
        returned in its place (fork evidence is then recorded); any other failure
        rolls back the whole batch and is raised."""
        results: list[T | EntryError] = []
        conn = self._conn
        with map_sqlite_errors(self.path, "writing to the log"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for operation in operations:
                    conn.execute("SAVEPOINT operation")
                    try:
                        results.append(operation())
                    except EntryError as exc:
                        conn.execute("ROLLBACK TO operation")
                        self._collections.clear()
                        if isinstance(exc, ForkError) and isinstance(exc.evidence, Entry):
                            self._record_fork(exc.evidence, exc.reason)
                        results.append(exc)
                    conn.execute("RELEASE operation")
                conn.execute("COMMIT")
            except BaseException:
                self._collections.clear()  # ids minted in this transaction are gone
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return results

    def _single(self, operation: Callable[[], T]) -> T:
        (result,) = self.batch([operation])
        if isinstance(result, EntryError):
            raise result
        return result

    def append(
        self, identity: Identity, clock: HybridClock, drafts: Sequence[Draft]
    ) -> list[Entry]:
        """Sign ``drafts`` as the next entries of our own feed and store them."""
        return self._single(lambda: self.append_now(identity, clock, drafts))

    def insert(self, entry: Entry) -> InsertOutcome:
        """Store a foreign entry whose signature the caller has verified."""
        return self._single(lambda: self.insert_now(entry))

    def append_now(
        self, identity: Identity, clock: HybridClock, drafts: Sequence[Draft]
    ) -> list[Entry]:
        """Inside a :meth:`batch`: sign and store drafts, reading the head in the
        transaction so several processes may append to one feed safely."""
        head = self.head(identity.node_id.key)
        seq, prev = (head.seq, head.hash) if head else (0, None)
        if head:
            clock.observe(head.ts)
        out = []
        for draft in drafts:
            base: tuple[bytes, ...] = ()
            if draft.doc_id is not None:
                base = self.documents.leaf_hashes(draft.collection, draft.doc_id)
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
            )
            self._store(entry, head_seq=seq, head_hash=prev)
            seq, prev = entry.seq, entry.hash
            out.append(entry)
        return out

    def insert_now(self, entry: Entry) -> InsertOutcome:
        """Inside a :meth:`batch`: store one verified foreign entry (see module rules)."""
        if len(entry.raw) > self.max_entry_size:
            raise EntryError(f"entry is {len(entry.raw)} bytes; the cap is {self.max_entry_size}")
        row = self._conn.execute(
            "SELECT id, head_seq, head_hash, low_seq FROM feeds WHERE author = ?", (entry.author,)
        ).fetchone()
        if row is None:
            self._store(entry, head_seq=0, head_hash=None)
            return InsertOutcome.STORED
        feed_id, head_seq, head_hash, low_seq = row
        if entry.seq < low_seq:
            return InsertOutcome.PRUNED
        if entry.seq == head_seq + 1:  # the common case: the next entry of the feed
            if entry.prev != head_hash:
                self._fork(entry, f"prev does not name the stored entry {entry.seq - 1}")
            self._check_ts_after(feed_id, entry)
            self._store(entry, head_seq=head_seq, head_hash=head_hash)
            return InsertOutcome.STORED
        stored = self._raw_at(feed_id, entry.seq)
        if stored is not None:
            if stored == entry.raw:
                return InsertOutcome.DUPLICATE
            self._fork(entry, "a different entry is stored at this seq")
        before = self._raw_at(feed_id, entry.seq - 1)
        if before is not None and entry_hash(before) != entry.prev:
            self._fork(entry, f"prev does not name the stored entry {entry.seq - 1}")
        self._check_ts_after(feed_id, entry)
        after = self._raw_at(feed_id, entry.seq + 1)
        if after is not None:
            successor = decode_entry(after, max_size=len(after))
            if successor.prev != entry.hash:
                self._fork(entry, f"the stored entry {entry.seq + 1} names a different prev")
            if successor.ts <= entry.ts:
                raise ChainError("timestamp is not below its successor's", entry.where)
        self._store(entry, head_seq=head_seq, head_hash=head_hash)
        return InsertOutcome.STORED

    def _check_ts_after(self, feed_id: int, entry: Entry) -> None:
        row = self._conn.execute(
            "SELECT ts FROM entries WHERE feed = ? AND seq = ?", (feed_id, entry.seq - 1)
        ).fetchone()
        if row is not None and row[0] >= entry.ts:
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

    def _store(self, entry: Entry, *, head_seq: int, head_hash: bytes | None) -> None:
        cid = self._collection_id(entry.collection)
        conn = self._conn
        if head_hash is None:
            cur = conn.execute(
                "INSERT INTO feeds (author, head_seq, head_hash, head_ts) VALUES (?, ?, ?, ?)",
                (entry.author, entry.seq, entry.hash, entry.ts),
            )
            feed_id = cur.lastrowid
        else:
            (feed_id,) = conn.execute(
                "SELECT id FROM feeds WHERE author = ?", (entry.author,)
            ).fetchone()
        cur = conn.execute(
            "INSERT INTO entries (feed, seq, ts, collection, raw) VALUES (?, ?, ?, ?, ?)",
            (feed_id, entry.seq, entry.ts, cid, entry.raw),
        )
        if entry.seq > head_seq:
            conn.execute(
                "UPDATE feeds SET head_seq = ?, head_hash = ?, head_ts = ?, entries = entries + 1,"
                " bytes = bytes + ? WHERE id = ?",
                (entry.seq, entry.hash, entry.ts, len(entry.raw), feed_id),
            )
        else:
            conn.execute(
                "UPDATE feeds SET entries = entries + 1, bytes = bytes + ? WHERE id = ?",
                (len(entry.raw), feed_id),
            )
        conn.execute("UPDATE collections SET entries = entries + 1 WHERE id = ?", (cid,))
        if entry.doc_id is not None:
            self.documents.add_version(cur.lastrowid, cid, entry)

    def prune(self, author: bytes, below_seq: int) -> int:
        """Delete the feed's entries with ``seq < below_seq`` (keeping current
        document versions) and refuse them from now on. Returns how many went."""
        return self._single(lambda: self.prune_now(author, below_seq))

    def prune_now(self, author: bytes, below_seq: int) -> int:
        """Inside a :meth:`batch`: see :meth:`prune`."""
        row = self._conn.execute(
            "SELECT id, low_seq, head_seq FROM feeds WHERE author = ?", (author,)
        ).fetchone()
        if row is None:
            return 0
        feed_id, low_seq, head_seq = row
        below = min(below_seq, head_seq + 1)
        if below <= low_seq:
            return 0
        victims = (
            "FROM entries WHERE feed = ? AND seq < ? AND change NOT IN "
            "(SELECT change FROM doc_versions WHERE leaf = 1)"
        )
        count, size = self._conn.execute(
            f"SELECT count(*), coalesce(sum(length(raw)), 0) {victims}", (feed_id, below)
        ).fetchone()
        self._conn.execute(
            "UPDATE collections SET entries = entries - (SELECT count(*) FROM entries e "
            "WHERE e.collection = collections.id AND e.feed = ? AND e.seq < ? AND e.change "
            "NOT IN (SELECT change FROM doc_versions WHERE leaf = 1))",
            (feed_id, below),
        )
        self._conn.execute(
            "DELETE FROM doc_versions WHERE leaf = 0 AND change IN "
            "(SELECT change FROM entries WHERE feed = ? AND seq < ?)",
            (feed_id, below),
        )
        self._conn.execute(f"DELETE {victims}", (feed_id, below))
        self._conn.execute(
            "UPDATE feeds SET low_seq = ?, entries = entries - ?, bytes = bytes - ? WHERE id = ?",
            (below, count, size, feed_id),
        )
        return int(count)

    # ------------------------------------------------------------------- reads

    def _stream(self, sql: str, params: Sequence[object]) -> Iterator[tuple[Any, ...]]:
        with map_sqlite_errors(self.path, "reading the log"):
            cursor = self._conn.execute(sql, params)
            try:
                while rows := cursor.fetchmany(_FETCH):
                    yield from rows
            finally:
                cursor.close()

    def _entries(self, sql: str, params: Sequence[object]) -> Iterator[Entry]:
        for (raw,) in self._stream(sql, params):
            yield decode_entry(raw, max_size=len(raw))

    def head(self, author: bytes) -> FeedHead | None:
        row = self._conn.execute(
            "SELECT author, head_seq, head_hash, head_ts, low_seq, entries, bytes "
            "FROM feeds WHERE author = ?",
            (author,),
        ).fetchone()
        return None if row is None else FeedHead(*row)

    def heads(self) -> list[FeedHead]:
        """Every feed held, ordered by author."""
        rows = self._conn.execute(
            "SELECT author, head_seq, head_hash, head_ts, low_seq, entries, bytes "
            "FROM feeds ORDER BY author"
        ).fetchall()
        return [FeedHead(*row) for row in rows]

    def totals(self) -> tuple[int, int]:
        """``(entries, bytes)`` held, from the per-feed counters (no table scan)."""
        row = self._conn.execute(
            "SELECT coalesce(sum(entries), 0), coalesce(sum(bytes), 0) FROM feeds"
        ).fetchone()
        return int(row[0]), int(row[1])

    def last_change(self) -> int:
        """The local change counter: grows by one per stored entry, never reused."""
        row = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'entries'"
        ).fetchone()
        return 0 if row is None else int(row[0])

    def collections(self) -> list[tuple[str, int]]:
        return [
            (name, count)
            for name, count in self._conn.execute(
                "SELECT name, entries FROM collections WHERE entries > 0 ORDER BY name"
            )
        ]

    def get(self, author: bytes, seq: int) -> Entry | None:
        row = self._conn.execute(
            "SELECT e.raw FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE f.author = ? AND e.seq = ?",
            (author, seq),
        ).fetchone()
        return None if row is None else decode_entry(row[0], max_size=len(row[0]))

    def feed(self, author: bytes, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Entry]:
        """The feed's entries held with ``from_seq <= seq <= to_seq``, in seq order."""
        return self._entries(
            "SELECT e.raw FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE f.author = ? AND e.seq >= ? AND e.seq <= ? ORDER BY e.seq",
            (author, from_seq, to_seq if to_seq is not None else 2**63 - 1),
        )

    def changes_since(self, change: int, limit: int | None = None) -> Iterator[tuple[int, Entry]]:
        """``(change, entry)`` for every entry stored after local change ``change``."""
        for number, raw in self._stream(
            "SELECT change, raw FROM entries WHERE change > ? ORDER BY change LIMIT ?",
            (change, -1 if limit is None else limit),
        ):
            yield number, decode_entry(raw, max_size=len(raw))

    def by_time(
        self,
        collection: str,
        since_ts: int = 0,
        until_ts: int = 2**63 - 1,
        *,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Entry]:
        """A collection's entries with ``since_ts <= ts < until_ts``, in timestamp order."""
        cid = self._collection_id(collection, create=False)
        if cid is None:
            return iter(())
        order = "DESC" if newest_first else "ASC"
        return self._entries(
            "SELECT raw FROM entries WHERE collection = ? AND ts >= ? AND ts < ? "
            f"ORDER BY ts {order} LIMIT ?",
            (cid, since_ts, min(until_ts, 2**63 - 1), -1 if limit is None else limit),
        )

    def latest_changes(self, n: int, collection: str | None = None) -> list[tuple[int, Entry]]:
        """The last ``n`` entries stored (by change counter), oldest first."""
        if collection is None:
            sql = "SELECT change, raw FROM entries ORDER BY change DESC LIMIT ?"
            params: tuple[int, ...] = (n,)
        else:
            cid = self._collection_id(collection, create=False)
            if cid is None:
                return []
            sql = (
                "SELECT change, raw FROM entries WHERE collection = ? ORDER BY change DESC LIMIT ?"
            )
            params = (cid, n)
        rows = self._conn.execute(sql, params).fetchall()
        return [(c, decode_entry(raw, max_size=len(raw))) for c, raw in reversed(rows)]

    def forks(self) -> list[ForkRecord]:
        return [
            ForkRecord(*row)
            for row in self._conn.execute(
                "SELECT author, seq, hash, reason, seen_at FROM forks ORDER BY id"
            )
        ]

    def raw_rows(self) -> Iterator[tuple[bytes, int, int, str, bytes]]:
        """``(author, seq, ts, collection, raw)`` for every entry, by feed and seq —
        the columns as stored, for :mod:`agent.store.verify`."""
        return self._stream(
            "SELECT f.author, e.seq, e.ts, c.name, e.raw FROM entries e "
            "JOIN feeds f ON f.id = e.feed JOIN collections c ON c.id = e.collection "
            "ORDER BY e.feed, e.seq",
            (),
        )

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for tests and diagnostics."""
        return self._conn
