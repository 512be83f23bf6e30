"""The document view: entries that carry a document id form documents.

Each version names, in its ``base``, the versions it replaces — every leaf its
author held when writing, so a local write resolves any conflict it could see.
The *leaves* of a document are the versions no stored version replaces. Then:

* the **current** version is the leaf with the highest HLC timestamp, author id
  breaking ties: last writer wins;
* the other leaves are **conflicts** (CouchDB's ``_conflicts``): versions written
  concurrently, without knowledge of each other, still visible until a later
  write names them in its base;
* a current version whose body is ``null`` means the document is deleted.

Leaves are maintained incrementally on insert and do not depend on the order in
which versions arrive: a version replaced by one that arrived earlier is
stored as a non-leaf from the start (``doc_replaced`` remembers the hash).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..entry import Entry, decode_entry

__all__ = ["Document", "DocumentIndex"]


@dataclass(frozen=True, slots=True)
class Document:
    """A document's current version and its unresolved concurrent versions."""

    collection: str
    doc_id: str
    current: Entry
    conflicts: tuple[Entry, ...]

    @property
    def body(self) -> Any:
        return self.current.body

    @property
    def deleted(self) -> bool:
        return self.current.body is None


def _winner_key(entry: Entry) -> tuple[int, bytes]:
    return entry.ts, entry.author


class DocumentIndex:
    """Document queries and leaf bookkeeping over the store's connection."""

    def __init__(
        self, conn: sqlite3.Connection, collection_id: Callable[[str, bool], int | None]
    ) -> None:
        self._conn = conn
        self._collection_id = collection_id

    def add_version(self, change: int | None, cid: int | None, entry: Entry) -> None:
        """Record a stored version (inside the storing transaction)."""
        doc = entry.doc_id
        if doc is None:
            return
        replaced = self._conn.execute(
            "SELECT 1 FROM doc_replaced WHERE collection = ? AND doc = ? AND hash = ?",
            (cid, doc, entry.hash),
        ).fetchone()
        self._conn.execute(
            "INSERT INTO doc_versions (change, collection, doc, hash, leaf) VALUES (?, ?, ?, ?, ?)",
            (change, cid, doc, entry.hash, 0 if replaced else 1),
        )
        for old in entry.base:
            self._conn.execute(
                "INSERT OR IGNORE INTO doc_replaced (collection, doc, hash) VALUES (?, ?, ?)",
                (cid, doc, old),
            )
            self._conn.execute(
                "UPDATE doc_versions SET leaf = 0 WHERE collection = ? AND doc = ? AND hash = ?",
                (cid, doc, old),
            )

    def _versions(self, collection: str, doc_id: str, *, leaves_only: bool) -> list[Entry]:
        """The versions held (only the leaves: those no other version names as base)."""
        cid = self._collection_id(collection, False)
        if cid is None:
            return []
        rows = self._conn.execute(
            "SELECT e.raw FROM doc_versions d JOIN entries e ON e.change = d.change "
            "WHERE d.collection = ? AND d.doc = ?" + (" AND d.leaf = 1" if leaves_only else ""),
            (cid, doc_id),
        ).fetchall()
        return [decode_entry(raw, max_size=len(raw), strict=False) for (raw,) in rows]

    def leaf_hashes(self, collection: str, doc_id: str) -> tuple[bytes, ...]:
        """Hashes of the document's leaves: the ``base`` of the next local write."""
        cid = self._collection_id(collection, False)
        if cid is None:
            return ()
        rows = self._conn.execute(
            "SELECT hash FROM doc_versions WHERE collection = ? AND doc = ? AND leaf = 1",
            (cid, doc_id),
        ).fetchall()
        return tuple(sorted(bytes(h) for (h,) in rows))

    def get(self, collection: str, doc_id: str) -> Document | None:
        """The document, or None if no version is held."""
        leaves = self._versions(collection, doc_id, leaves_only=True)
        leaves.sort(key=_winner_key, reverse=True)
        if not leaves:
            return None
        return Document(collection, doc_id, leaves[0], tuple(leaves[1:]))

    def history(self, collection: str, doc_id: str) -> list[Entry]:
        """Every version held, oldest first (by timestamp, then author)."""
        return sorted(self._versions(collection, doc_id, leaves_only=False), key=_winner_key)

    def ids(self, collection: str) -> Iterator[str]:
        """The ids of the documents in ``collection`` that have a leaf, sorted."""
        cid = self._collection_id(collection, False)
        if cid is None:
            return iter(())
        return (
            doc
            for (doc,) in self._conn.execute(
                "SELECT DISTINCT doc FROM doc_versions WHERE collection = ? AND leaf = 1 "
                "ORDER BY doc",
                (cid,),
            )
        )
