"""Pruning a feed: deleting its entries below a seq, for good.

What goes is every entry of the feed with a lower seq that is not the current
version of a document (those stay, so the document view is unchanged); the
feed's prune watermark (``feeds.low_seq``) rises, and the log refuses those
seqs from then on (:attr:`~agent.store.log_store.InsertOutcome.PRUNED`). The
feed's and the collections' counters shrink by what went, in the same
transaction. Used by :meth:`LogStore.prune_now
<agent.store.log_store.LogStore.prune_now>`, inside its batch."""

from __future__ import annotations

import sqlite3

__all__ = ["prune_feed"]

#: the entries of a feed below a seq that are not a document's current version
_VICTIMS = (
    "FROM entries WHERE feed = ? AND seq < ? AND change NOT IN "
    "(SELECT change FROM doc_versions WHERE leaf = 1)"
)


def prune_feed(conn: sqlite3.Connection, author: bytes, below_seq: int) -> tuple[int, int | None]:
    """Inside a transaction: delete ``author``'s entries with ``seq < below_seq``
    (never past its head) but the current document versions. Returns how many
    went and the feed's new watermark (``None``: unknown feed, or nothing new
    below the one it has)."""
    row = conn.execute(
        "SELECT id, low_seq, head_seq FROM feeds WHERE author = ?", (author,)
    ).fetchone()
    if row is None:
        return 0, None
    feed_id, low_seq, head_seq = row
    below = min(below_seq, head_seq + 1)
    if below <= low_seq:
        return 0, None
    count, size = conn.execute(
        f"SELECT count(*), coalesce(sum(length(raw)), 0) {_VICTIMS}", (feed_id, below)
    ).fetchone()
    conn.execute(
        "UPDATE collections SET entries = entries - (SELECT count(*) FROM entries e "
        "WHERE e.collection = collections.id AND e.feed = ? AND e.seq < ? AND e.change "
        "NOT IN (SELECT change FROM doc_versions WHERE leaf = 1))",
        (feed_id, below),
    )
    conn.execute(
        "DELETE FROM doc_versions WHERE leaf = 0 AND change IN "
        "(SELECT change FROM entries WHERE feed = ? AND seq < ?)",
        (feed_id, below),
    )
    conn.execute(f"DELETE {_VICTIMS}", (feed_id, below))
    conn.execute(
        "UPDATE feeds SET low_seq = ?, entries = entries - ?, bytes = bytes - ? WHERE id = ?",
        (below, count, size, feed_id),
    )
    return int(count), below
