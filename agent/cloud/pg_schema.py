"""The PostgreSQL sink's schema and its pure rules (no connection held here).

Everything lives in the schema ``lichen`` of the operator's database::

    lichen.entries   (author, seq) PRIMARY KEY — exactly once; hash, prev, ts,
                     collection, doc_id, the exact signed bytes (raw)
    lichen.feeds     one row per author: head_seq, entries, bytes, contiguous
                     (highest N with 1..N held or in a hole), acked_seq and the
                     current ack entry (ack_raw); cloud = a worker's own feed
    lichen.holes     seq ranges an author declared dropped from its own feed
    lichen.forks     evidence: entries refused because a different one holds
                     their (author, seq)
    lichen.workers   the cloud workers that ever ingested into this database
    lichen.meta      schema_version

Concurrency: a worker storing entries of a feed first locks the feed's row
(``SELECT … FOR UPDATE``), in author order, so chain checks and the
``contiguous`` update see every committed neighbour and never interleave.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..entry import Entry
from ..errors import ChainError, ForkError
from ..store.log_store import InsertOutcome

__all__ = ["DDL", "SCHEMA_LOCK", "SCHEMA_VERSION", "StoredRow", "check_entry"]

SCHEMA_VERSION = 1
#: pg_advisory_xact_lock key serialising schema creation between workers
SCHEMA_LOCK = 0x4C494348454E  # "LICHEN"
MAX_TS = 2**63 - 1

DDL = (
    "CREATE SCHEMA IF NOT EXISTS lichen",
    """CREATE TABLE IF NOT EXISTS lichen.meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS lichen.feeds (
        author     bytea PRIMARY KEY CHECK (length(author) = 32),
        node_id    text NOT NULL,
        head_seq   bigint NOT NULL DEFAULT 0,
        entries    bigint NOT NULL DEFAULT 0,
        bytes      bigint NOT NULL DEFAULT 0,
        contiguous bigint NOT NULL DEFAULT 0,
        acked_seq  bigint NOT NULL DEFAULT 0,
        ack_raw    bytea,
        cloud      boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS lichen.entries (
        author     bytea NOT NULL,
        seq        bigint NOT NULL CHECK (seq >= 1),
        hash       bytea NOT NULL CHECK (length(hash) = 32),
        prev       bytea,
        ts         bigint NOT NULL,
        collection text NOT NULL,
        doc_id     text,
        raw        bytea NOT NULL,
        stored_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (author, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS entries_by_time ON lichen.entries (collection, ts)",
    """CREATE TABLE IF NOT EXISTS lichen.holes (
        author      bytea NOT NULL,
        first_seq   bigint NOT NULL,
        last_seq    bigint NOT NULL CHECK (last_seq >= first_seq),
        reason      text NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (author, first_seq, last_seq)
    )""",
    """CREATE TABLE IF NOT EXISTS lichen.forks (
        author  bytea NOT NULL,
        seq     bigint NOT NULL,
        hash    bytea NOT NULL,
        raw     bytea NOT NULL,
        reason  text NOT NULL,
        seen_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (author, seq, hash)
    )""",
    """CREATE TABLE IF NOT EXISTS lichen.workers (
        author     bytea PRIMARY KEY,
        node_id    text NOT NULL,
        client_id  text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
    )""",
)

#: one round trip: does a hole cover n+1 (its end), and is entry n+1 held?
NEXT_STEP = """
SELECT (SELECT max(last_seq) FROM lichen.holes
         WHERE author = %(a)s AND first_seq <= %(n)s + 1 AND last_seq >= %(n)s + 1),
       EXISTS (SELECT 1 FROM lichen.entries WHERE author = %(a)s AND seq = %(n)s + 1)
"""
#: the end of the run of held entries that starts after n (costs the run's length)
RUN_END = """
SELECT e.seq FROM lichen.entries e
 WHERE e.author = %(a)s AND e.seq > %(n)s
   AND NOT EXISTS (SELECT 1 FROM lichen.entries x WHERE x.author = e.author AND x.seq = e.seq + 1)
 ORDER BY e.seq LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class StoredRow:
    """The columns of a stored entry the chain checks need."""

    hash: bytes
    prev: bytes | None
    ts: int
    raw: bytes

    @classmethod
    def of(cls, entry: Entry) -> StoredRow:
        return cls(entry.hash, entry.prev, entry.ts, entry.raw)


def _fork(entry: Entry, reason: str) -> ForkError:
    return ForkError(
        f"fork: {reason}; recorded as evidence, not stored", entry.where, evidence=entry
    )


def check_entry(known: dict[int, StoredRow], entry: Entry) -> InsertOutcome:
    """The store's rules (:meth:`agent.store.log_store.LogStore.insert_now`) against
    the stored neighbours in ``known``: DUPLICATE for the same bytes, STORED if it
    may be stored; raises ForkError or ChainError."""
    if entry.ts > MAX_TS:
        raise ChainError("timestamp is beyond 2^63 - 1", entry.where)
    held = known.get(entry.seq)
    if held is not None:
        if held.raw == entry.raw:
            return InsertOutcome.DUPLICATE
        raise _fork(entry, "a different entry is stored at this seq")
    before = known.get(entry.seq - 1)
    if before is not None:
        if before.hash != entry.prev:
            raise _fork(entry, f"prev does not name the stored entry {entry.seq - 1}")
        if before.ts >= entry.ts:
            raise ChainError("timestamp does not increase along the feed", entry.where)
    after = known.get(entry.seq + 1)
    if after is not None:
        if after.prev != entry.hash:
            raise _fork(entry, f"the stored entry {entry.seq + 1} names a different prev")
        if after.ts <= entry.ts:
            raise ChainError("timestamp is not below its successor's", entry.where)
    return InsertOutcome.STORED
