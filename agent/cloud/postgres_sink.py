"""The PostgreSQL sink (psycopg 3): one database, any number of cloud workers.

The primary key ``(author, seq)`` of ``lichen.entries`` makes storage exactly
once; per-feed row locks serialise the chain checks and the contiguity
update between workers (see :mod:`agent.cloud.pg_schema`). Each worker talks
to the database from one thread of its own with one connection; a broken
connection is reopened on the next call, and the batch that failed is
retried by the caller (nothing was acknowledged).

The worker's acknowledgements are still signed into its own Lichen log (its
home), and the current one per feed is kept in ``lichen.feeds`` so that any
worker can republish the newest acknowledgement, whoever signed it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..clock import pack
from ..entry import Entry, decode_entry
from ..errors import ForkError
from ..identity import NodeId
from ..store.log_store import InsertOutcome
from .core import Accepted, acked_feed
from .pg_schema import DDL, NEXT_STEP, RUN_END, SCHEMA_LOCK, SCHEMA_VERSION, StoredRow, check_entry
from .sink import EntryQuery, FeedInfo, FeedProgress, SinkError, StoreResult, over_quota

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresReader", "PostgresSink", "connect", "safe_dsn"]

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10
_FETCH = 256


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection to ``dsn`` (SinkError naming the problem, not the password)."""
    import psycopg

    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="lichen-cloud",
        )
    except psycopg.Error as exc:
        raise SinkError(f"PostgreSQL: cannot connect: {str(exc).strip()}") from None


def safe_dsn(dsn: str) -> str:
    """``dsn`` without its password, for status files and logs."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def create_schema(conn: psycopg.Connection[Any]) -> None:
    """Create what is missing, once, even with several workers starting together."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in DDL:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM lichen.meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO lichen.meta (key, value) VALUES ('schema_version', %s)",
                (str(SCHEMA_VERSION),),
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise SinkError(
                f"PostgreSQL schema lichen has version {row[0]}, newer than this Lichen "
                f"understands ({SCHEMA_VERSION}). Fix: upgrade Lichen"
            )


def advance(cur: psycopg.Cursor[Any], author: bytes, known: int) -> int:
    """The feed's highest contiguous seq, scanning from ``known`` (contiguous)."""
    n = known
    while True:
        params = {"a": author, "n": n}
        cur.execute(NEXT_STEP, params)
        row = cur.fetchone()
        assert row is not None
        hole_end, held = row
        if hole_end is not None:
            n = max(n, int(hole_end))
        elif held:
            cur.execute(RUN_END, params)
            end = cur.fetchone()
            assert end is not None
            n = int(end[0])
        else:
            return n


def _store(
    conn: psycopg.Connection[Any], accepted: Sequence[Accepted], own: bytes, quota: int
) -> StoreResult:
    outcomes: list[InsertOutcome | ValueError | None] = [None] * len(accepted)
    by_author: dict[bytes, list[int]] = {}
    for i, item in enumerate(accepted):
        by_author.setdefault(item.entry.author, []).append(i)
    feeds: dict[bytes, FeedProgress] = {}
    with conn.transaction(), conn.cursor() as cur:
        for author in sorted(by_author):  # one lock order for every worker: no deadlock
            order = sorted(by_author[author], key=lambda i: accepted[i].entry.seq)
            limit = 0 if author == own else quota
            feeds[author] = _store_feed(cur, author, [(i, accepted[i]) for i in order],
                                        outcomes, limit)  # fmt: skip
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(accepted)
    return StoreResult(done, feeds)


def _store_feed(
    cur: psycopg.Cursor[Any],
    author: bytes,
    items: list[tuple[int, Accepted]],
    outcomes: list[InsertOutcome | ValueError | None],
    quota: int,
) -> FeedProgress:
    """Store one feed's ``items`` (in seq order) under its locked row; each
    item's outcome goes to ``outcomes`` at its index."""
    cur.execute(
        "INSERT INTO lichen.feeds (author, node_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (author, str(NodeId(author))),
    )
    cur.execute(
        "SELECT contiguous, acked_seq, cloud, bytes FROM lichen.feeds WHERE author = %s FOR UPDATE",
        (author,),
    )
    locked = cur.fetchone()
    assert locked is not None
    contiguous, acked, cloud, held = int(locked[0]), int(locked[1]), bool(locked[2]), locked[3]
    wanted = sorted({item.entry.seq + d for _, item in items for d in (-1, 0, 1)})
    cur.execute(
        "SELECT seq, hash, prev, ts, raw FROM lichen.entries WHERE author = %s AND seq = ANY(%s)",
        (author, wanted),
    )
    known = {int(s): StoredRow(bytes(h), p and bytes(p), int(t), bytes(r))
             for s, h, p, t, r in cur.fetchall()}  # fmt: skip
    rows: list[tuple[Any, ...]] = []
    forks: list[tuple[Any, ...]] = []
    holes: list[tuple[Any, ...]] = []
    head = size = 0
    for i, item in items:
        entry = item.entry
        try:
            outcome = check_entry(known, entry)
            if outcome is InsertOutcome.STORED:
                refusal = over_quota(author, int(held) + size, len(entry.raw), quota)
                if refusal is not None:
                    raise refusal
        except ForkError as exc:
            forks.append((author, entry.seq, entry.hash, entry.raw, exc.reason))
            outcomes[i] = exc
            continue
        except ValueError as exc:
            outcomes[i] = exc
            continue
        outcomes[i] = outcome
        if outcome is InsertOutcome.STORED:
            known[entry.seq] = StoredRow.of(entry)
            rows.append((author, entry.seq, entry.hash, entry.prev, entry.ts,
                         entry.collection, entry.doc_id, entry.raw))  # fmt: skip
            head, size = max(head, entry.seq), size + len(entry.raw)
        holes += [(author, a, b, item.hole_reason or "dropped") for a, b in item.holes]
    if rows:
        cur.executemany(
            "INSERT INTO lichen.entries (author, seq, hash, prev, ts, collection, doc_id, raw) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    if forks:
        cur.executemany(
            "INSERT INTO lichen.forks (author, seq, hash, raw, reason) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            forks,
        )
    if holes:
        cur.executemany(
            "INSERT INTO lichen.holes (author, first_seq, last_seq, reason) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            holes,
        )
    if not known and not rows:  # nothing held: leave the contiguity alone
        return FeedProgress(author, contiguous, acked, cloud)
    contiguous = advance(cur, author, contiguous)
    cur.execute(
        "UPDATE lichen.feeds SET head_seq = greatest(head_seq, %s), "
        "entries = entries + %s, bytes = bytes + %s, contiguous = %s, "
        "updated_at = now() WHERE author = %s",
        (head, len(rows), size, contiguous, author),
    )
    return FeedProgress(author, contiguous, acked, cloud)


class PostgresReader:
    """Read side: its own connection; ``entries`` streams from a server-side cursor."""

    def __init__(self, dsn: str, own: bytes) -> None:
        self.conn = connect(dsn)
        self.own = own

    def feeds(self) -> list[FeedInfo]:
        rows = self.conn.execute(
            "SELECT author, entries, bytes, head_seq, contiguous, acked_seq FROM lichen.feeds "
            "WHERE entries > 0 ORDER BY author"
        ).fetchall()
        self.conn.rollback()
        return [
            FeedInfo(bytes(a), int(n), int(b), int(h), int(c), int(k), own=bytes(a) == self.own)
            for a, n, b, h, c, k in rows
        ]

    def totals(self) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT coalesce(sum(entries), 0), coalesce(sum(bytes), 0) FROM lichen.feeds"
        ).fetchone()
        self.conn.rollback()
        assert row is not None
        return int(row[0]), int(row[1])

    def entries(self, query: EntryQuery) -> Iterator[Entry]:
        where = ["collection = %(c)s" if query.collection else "collection NOT LIKE '\\_%%'"]
        params: dict[str, Any] = {"c": query.collection, "a": query.author}
        if query.author is not None:
            where.append("author = %(a)s")
        if query.since_ms is not None:
            where.append("ts >= %(since)s")
            params["since"] = pack(max(0, query.since_ms))
        if query.until_ms is not None:
            where.append("ts < %(until)s")
            params["until"] = pack(max(0, query.until_ms))
        sql = f"SELECT raw FROM lichen.entries WHERE {' AND '.join(where)} ORDER BY collection, ts"
        try:
            with self.conn.cursor(name="lichen_entries") as cur:
                cur.itersize = _FETCH
                cur.execute(sql, params)
                for (raw,) in cur:
                    data = bytes(raw)
                    yield decode_entry(data, max_size=len(data), strict=False)
        finally:
            self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


class PostgresSink:
    """Stores into PostgreSQL from one thread with one connection."""

    name = "postgres"

    def __init__(self, dsn: str, own: bytes, *, client_id: str = "", quota: int = 0) -> None:
        self.dsn = dsn
        self.own = own
        self.client_id = client_id
        self.quota = quota
        self._conn: psycopg.Connection[Any] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lichen-pg")

    async def _run(self, function: Callable[[psycopg.Connection[Any]], T]) -> T:
        import psycopg

        def call() -> T:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.dsn, autocommit=True)
            try:
                return function(self._conn)
            except psycopg.Error as exc:
                if self._conn.broken or isinstance(exc, psycopg.OperationalError):
                    self._conn.close()
                    self._conn = None
                raise SinkError(f"PostgreSQL: {type(exc).__name__}: {str(exc).strip()}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def open(self) -> None:
        own, client_id = self.own, self.client_id

        def setup(conn: psycopg.Connection[Any]) -> None:
            create_schema(conn)
            with conn.transaction():
                conn.execute(
                    "INSERT INTO lichen.workers (author, node_id, client_id) VALUES (%s, %s, %s) "
                    "ON CONFLICT (author) DO UPDATE SET client_id = excluded.client_id",
                    (own, str(NodeId(own)), client_id),
                )
                conn.execute(
                    "INSERT INTO lichen.feeds (author, node_id, cloud) VALUES (%s, %s, true) "
                    "ON CONFLICT (author) DO UPDATE SET cloud = true",
                    (own, str(NodeId(own))),
                )

        await self._run(setup)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)

    async def store(self, accepted: Sequence[Accepted]) -> StoreResult:
        return await self._run(lambda conn: _store(conn, accepted, self.own, self.quota))

    async def record_acks(self, acks: Sequence[Entry]) -> None:
        rows = []
        for entry in acks:
            found = acked_feed(entry)
            if found is not None:
                rows.append((found[1], entry.raw, found[0], found[1]))

        def record(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "UPDATE lichen.feeds SET acked_seq = %s, ack_raw = %s "
                    "WHERE author = %s AND acked_seq < %s",
                    rows,
                )

        if rows:
            await self._run(record)

    async def current_acks(self, feeds: Sequence[bytes]) -> dict[bytes, tuple[int, bytes]]:
        def read(conn: psycopg.Connection[Any]) -> dict[bytes, tuple[int, bytes]]:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT author, acked_seq, ack_raw FROM lichen.feeds "
                    "WHERE author = ANY(%s) AND ack_raw IS NOT NULL",
                    (list(feeds),),
                ).fetchall()
            return {bytes(a): (int(s), bytes(r)) for a, s, r in rows}

        return await self._run(read) if feeds else {}

    def reader(self) -> PostgresReader:
        return PostgresReader(self.dsn, self.own)
