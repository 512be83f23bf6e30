"""The log database's schema and its numbered migrations.

``PRAGMA user_version`` holds the schema version. Opening a database applies
every missing migration, each in its own transaction; a database written by a
newer Lichen is refused rather than guessed at.

Tables (version 1):

``feeds``         one row per author: head (seq, hash, ts), prune watermark, counts.
                  The head survives pruning of the head entry itself.
``collections``   interned collection names with entry counts.
``entries``       the log: ``change`` is the local change counter (CouchDB's
                  update sequence; AUTOINCREMENT, so never reused after a
                  prune), ``raw`` the exact signed bytes.
``doc_versions``  one row per document version; ``leaf`` = no stored version
                  replaces it (the current version and its conflicts are leaves).
``doc_replaced``  every (collection, doc, hash) some stored version replaces —
                  kept even before that version arrives, so any insertion order
                  gives the same leaves.
``forks``         evidence of equivocation: entries refused because a different
                  entry holds their place in the feed.

Version 2 adds:

``sync_checkpoints``  per peer, the peer's change counter up to which everything
                  it offered has been received and stored (CouchDB's replication
                  checkpoint): the next sync asks only for what changed since.

Version 3 adds the delivery bookkeeping of :mod:`agent.store.delivery`:
``holes`` (seq ranges gone for good), ``uplink_acks`` (what a trusted cloud
acknowledged) and ``ack_marks`` (when, for retention).
"""

from __future__ import annotations

import sqlite3

from ..errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) STRICT, WITHOUT ROWID;

CREATE TABLE feeds (
    id        INTEGER PRIMARY KEY,
    author    BLOB NOT NULL UNIQUE CHECK (length(author) = 32),
    head_seq  INTEGER NOT NULL,
    head_hash BLOB NOT NULL,
    head_ts   INTEGER NOT NULL,
    low_seq   INTEGER NOT NULL DEFAULT 1,
    entries   INTEGER NOT NULL DEFAULT 0,
    bytes     INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE collections (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    entries INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE entries (
    change     INTEGER PRIMARY KEY AUTOINCREMENT,
    feed       INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    collection INTEGER NOT NULL,
    raw        BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX entries_by_feed ON entries (feed, seq);
CREATE INDEX entries_by_time ON entries (collection, ts);

CREATE TABLE doc_versions (
    change     INTEGER PRIMARY KEY,
    collection INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    leaf       INTEGER NOT NULL
) STRICT;
CREATE INDEX doc_versions_by_doc ON doc_versions (collection, doc, leaf);

CREATE TABLE doc_replaced (
    collection INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    hash       BLOB NOT NULL,
    PRIMARY KEY (collection, doc, hash)
) STRICT, WITHOUT ROWID;

CREATE TABLE forks (
    id      INTEGER PRIMARY KEY,
    author  BLOB NOT NULL,
    seq     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    raw     BLOB NOT NULL,
    reason  TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    UNIQUE (author, seq, hash)
) STRICT;
"""

_V2 = """
CREATE TABLE sync_checkpoints (
    peer       BLOB PRIMARY KEY CHECK (length(peer) = 32),
    change     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"""

_V3 = """
CREATE TABLE holes (
    feed     INTEGER NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq   INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (feed, from_seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE uplink_acks (
    author   BLOB PRIMARY KEY CHECK (length(author) = 32),
    seq      INTEGER NOT NULL,
    cloud    BLOB NOT NULL,
    acked_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE ack_marks (
    author BLOB NOT NULL,
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (author, seq)
) STRICT, WITHOUT ROWID;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the database at ``path`` to :data:`SCHEMA_VERSION`."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this Lichen understands "
            f"({SCHEMA_VERSION}). Fix: upgrade Lichen; the database was not touched"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[number - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            if current >= number:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in script.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
