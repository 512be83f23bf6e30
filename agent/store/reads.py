"""Read queries of the log store. Every range streams from a cursor; nothing
loads a whole log into memory. Entries read back are decoded without the
canonical-form proof (``strict=False``): the store only ever accepted
canonical entries, and their signatures still guard the bytes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..entry import Entry, decode_entry
from ..identity import NodeId
from .connection import map_sqlite_errors

__all__ = ["FeedHead", "ForkRecord", "LogReads", "Stream"]

#: a streaming query of the store: ``stream(sql, params)`` yields its rows chunk by chunk
Stream = Callable[[str, Sequence[object]], Iterator[tuple[Any, ...]]]

_FETCH = 256
_MAX_INT = 2**63 - 1


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


def _decode(raw: bytes) -> Entry:
    return decode_entry(raw, max_size=len(raw), strict=False)


class LogReads:
    """The read half of :class:`~agent.store.log_store.LogStore`."""

    path: Path
    _conn: sqlite3.Connection

    def _collection_id(self, name: str, create: bool = True) -> int | None:
        raise NotImplementedError

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
            yield _decode(raw)

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

    def stored_since(
        self, collections: Sequence[str], after: int, limit: int = _FETCH
    ) -> tuple[list[Entry], int]:
        """Entries of ``collections`` stored after local change ``after`` (at most
        ``limit``, oldest first), and the change up to which the log was read: the
        next call's ``after`` (a reader that follows a few collections as they grow)."""
        last = self.last_change()
        if last <= after or not collections:
            return [], max(after, last)
        with map_sqlite_errors(self.path, "reading the log"):
            marks = ",".join("?" * len(collections))
            ids = [row[0] for row in self._conn.execute(
                f"SELECT id FROM collections WHERE name IN ({marks})", tuple(collections)
            )]  # fmt: skip
            if not ids:
                return [], last
            # `+collection` keeps SQLite on the primary key: only the new rows are read
            rows = self._conn.execute(
                f"SELECT change, raw FROM entries WHERE change > ? AND +collection IN "
                f"({','.join('?' * len(ids))}) ORDER BY change LIMIT ?",
                (after, *ids, limit),
            ).fetchall()
        if len(rows) == limit:
            last = int(rows[-1][0])
        return [_decode(raw) for _, raw in rows], last

    def collections(self) -> list[tuple[str, int]]:
        """``(name, entries held)`` for every collection with entries."""
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
        return None if row is None else _decode(row[0])

    def feed(self, author: bytes, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Entry]:
        """The feed's entries held with ``from_seq <= seq <= to_seq``, in seq order."""
        return self._entries(
            "SELECT e.raw FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE f.author = ? AND e.seq >= ? AND e.seq <= ? ORDER BY e.seq",
            (author, from_seq, to_seq if to_seq is not None else _MAX_INT),
        )

    def changes_since(self, change: int, limit: int | None = None) -> Iterator[tuple[int, Entry]]:
        """``(change, entry)`` for every entry stored after local change ``change``."""
        for number, raw in self._stream(
            "SELECT change, raw FROM entries WHERE change > ? ORDER BY change LIMIT ?",
            (change, -1 if limit is None else limit),
        ):
            yield number, _decode(raw)

    def by_time(
        self,
        collection: str,
        since_ts: int = 0,
        until_ts: int = _MAX_INT,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        author: bytes | None = None,
    ) -> Iterator[Entry]:
        """A collection's entries with ``since_ts <= ts < until_ts``, in timestamp
        order (``author``: of that feed only)."""
        cid = self._collection_id(collection, False)
        if cid is None:
            return iter(())
        order = "DESC" if newest_first else "ASC"
        params: list[object] = [cid, since_ts, min(until_ts, _MAX_INT)]
        feed = ""
        if author is not None:
            feed = " AND feed = (SELECT id FROM feeds WHERE author = ?)"
            params.append(author)
        return self._entries(
            f"SELECT raw FROM entries WHERE collection = ? AND ts >= ? AND ts < ?{feed} "
            f"ORDER BY ts {order} LIMIT ?",
            (*params, -1 if limit is None else limit),
        )

    def latest_changes(self, n: int, collection: str | None = None) -> list[tuple[int, Entry]]:
        """The last ``n`` entries stored (by change counter), oldest first."""
        if collection is None:
            sql = "SELECT change, raw FROM entries ORDER BY change DESC LIMIT ?"
            params: tuple[int, ...] = (n,)
        else:
            cid = self._collection_id(collection, False)
            if cid is None:
                return []
            sql = (
                "SELECT change, raw FROM entries WHERE collection = ? ORDER BY change DESC LIMIT ?"
            )
            params = (cid, n)
        rows = self._conn.execute(sql, params).fetchall()
        return [(c, _decode(raw)) for c, raw in reversed(rows)]

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
