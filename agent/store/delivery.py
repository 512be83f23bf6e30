"""Delivery bookkeeping of the log: holes, contiguity, the cloud's acknowledgements.

A part of :class:`~agent.store.log_store.LogStore`, reached as ``store.delivery``
(schema version 3):

``holes``        seq ranges of a feed known to be gone for good: dropped by this
                 node to stay within its disk quota, or (in the cloud) declared
                 dropped by the feed's own author. Sync does not ask for them and
                 they count as held for :meth:`contiguous_seq`.
``uplink_acks``  per feed, the highest seq a trusted cloud acknowledged (every
                 entry ``1..seq`` reached it), which cloud, and when it arrived.
``ack_marks``    at most one ``(feed, seq, time)`` per feed and hour: retention
                 prunes what was acknowledged ``keep_after_ack`` ago.

Write methods ending in ``_now`` run inside :meth:`LogStore.batch`.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .reads import Stream

__all__ = ["Delivery", "DroppedEntries", "merge_ranges"]

#: an acknowledgement advances the newest ack mark of its feed when that mark is
#: younger than this; older marks stay, so pruning is at most this much late
MARK_GRANULARITY_MS = 3_600_000


def merge_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7, 9, 10]`` → ``[(1, 3), (7, 7), (9, 10)]``."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class DroppedEntries:
    """What :meth:`Delivery.drop_entries_now` removed."""

    feeds: dict[bytes, list[tuple[int, int]]] = field(default_factory=dict)
    collections: Counter[str] = field(default_factory=Counter)
    entries: int = 0
    bytes: int = 0


class Delivery:
    """Holes, contiguity and acknowledgements: the delivery part of a ``LogStore``
    (``store.delivery``)."""

    def __init__(self, conn: sqlite3.Connection, stream: Stream) -> None:
        self._conn = conn
        self._stream = stream

    def _feed_row(self, author: bytes) -> tuple[int, int, int] | None:
        row = self._conn.execute(
            "SELECT id, low_seq, head_seq FROM feeds WHERE author = ?", (author,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    # ------------------------------------------------------------------ holes

    def add_holes_now(self, author: bytes, ranges: Sequence[tuple[int, int]], reason: str) -> int:
        """Inside a batch: record ``ranges`` of ``author``'s feed as gone for good.
        Entries held there stay (a hole only stands for what is missing). Returns
        how many ranges were new; a feed not held yet is skipped (0)."""
        row = self._feed_row(author)
        if row is None:
            return 0
        added = 0
        for first, last in ranges:
            if not 1 <= first <= last:
                raise ValueError(f"hole [{first}, {last}] is not a seq range")
            cur = self._conn.execute(
                "INSERT INTO holes (feed, from_seq, to_seq, reason, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (feed, from_seq) DO UPDATE SET to_seq = max(to_seq, excluded.to_seq)",
                (row[0], first, last, reason, _now_ms()),
            )
            added += cur.rowcount
        return added

    def hole_ranges(self, author: bytes) -> list[tuple[int, int]]:
        """The feed's holes, merged and in order."""
        rows = self._conn.execute(
            "SELECT h.from_seq, h.to_seq FROM holes h JOIN feeds f ON f.id = h.feed "
            "WHERE f.author = ? ORDER BY h.from_seq",
            (author,),
        ).fetchall()
        out: list[tuple[int, int]] = []
        for first, last in rows:
            if out and first <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            else:
                out.append((first, last))
        return out

    def contiguous_seq(self, author: bytes, known: int = 0) -> int:
        """The highest ``N`` such that every seq ``1..N`` of ``author``'s feed is
        held, below the prune watermark, or in a hole (0 for an unknown feed).
        ``known`` is a seq already known to be contiguous: the scan starts there."""
        row = self._feed_row(author)
        if row is None:
            return 0
        feed_id, low_seq, _head = row
        n = max(known, low_seq - 1)
        holes = self.hole_ranges(author)
        while True:
            for first, last in holes:  # jump over every hole that starts at n + 1
                if first <= n + 1 <= last + 1:
                    n = max(n, last)
            advanced = False
            for (seq,) in self._stream(
                "SELECT seq FROM entries WHERE feed = ? AND seq > ? ORDER BY seq", (feed_id, n)
            ):
                if seq != n + 1:
                    break
                n, advanced = int(seq), True
            if not advanced and not any(first <= n + 1 <= last for first, last in holes):
                return n

    # -------------------------------------------------------- acknowledgements

    def record_ack_now(
        self, author: bytes, seq: int, cloud: bytes, at_ms: int | None = None
    ) -> bool:
        """Inside a batch: a trusted cloud holds ``author``'s entries ``1..seq``.
        Returns True when this advanced what was known (acks never go back)."""
        at = _now_ms() if at_ms is None else at_ms
        row = self._conn.execute(
            "SELECT seq FROM uplink_acks WHERE author = ?", (author,)
        ).fetchone()
        if row is not None and row[0] >= seq:
            return False
        self._conn.execute(
            "INSERT INTO uplink_acks (author, seq, cloud, acked_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (author) DO UPDATE SET seq = excluded.seq, cloud = excluded.cloud, "
            "acked_at = excluded.acked_at",
            (author, seq, cloud, at),
        )
        mark = self._conn.execute(
            "SELECT seq, at FROM ack_marks WHERE author = ? ORDER BY at DESC LIMIT 1", (author,)
        ).fetchone()
        if mark is None or at - mark[1] >= MARK_GRANULARITY_MS:
            self._conn.execute(
                "INSERT OR REPLACE INTO ack_marks (author, seq, at) VALUES (?, ?, ?)",
                (author, seq, at),
            )
        return True

    def forget_ack_now(self, author: bytes) -> None:
        """Inside a batch: forget what was acknowledged of ``author``'s feed (its
        cloud is no longer trusted); it is sent and acknowledged again."""
        self._conn.execute("DELETE FROM uplink_acks WHERE author = ?", (author,))
        self._conn.execute("DELETE FROM ack_marks WHERE author = ?", (author,))

    def acked(self) -> dict[bytes, int]:
        """Per feed, the highest acknowledged seq."""
        return {
            bytes(a): int(s) for a, s in self._conn.execute("SELECT author, seq FROM uplink_acks")
        }

    def ack_details(self) -> list[tuple[bytes, int, bytes, int]]:
        """``(feed, seq, cloud, acked_at_ms)`` of every acknowledged feed."""
        return [
            (bytes(a), int(s), bytes(c), int(t))
            for a, s, c, t in self._conn.execute(
                "SELECT author, seq, cloud, acked_at FROM uplink_acks ORDER BY author"
            )
        ]

    def acked_before(self, cutoff_ms: int) -> dict[bytes, int]:
        """Per feed, the highest seq acknowledged at or before ``cutoff_ms``."""
        return {
            bytes(a): int(s)
            for a, s in self._conn.execute(
                "SELECT author, max(seq) FROM (SELECT author, seq, at FROM ack_marks "
                "UNION ALL SELECT author, seq, acked_at FROM uplink_acks) "
                "WHERE at <= ? GROUP BY author",
                (cutoff_ms,),
            )
        }

    def forget_marks_now(self, author: bytes, below_seq: int) -> None:
        """Inside a batch: drop ack marks the feed's prune watermark has passed,
        keeping the newest one."""
        self._conn.execute(
            "DELETE FROM ack_marks WHERE author = ? AND seq < ? AND at < "
            "(SELECT max(at) FROM ack_marks WHERE author = ?)",
            (author, below_seq, author),
        )

    # ------------------------------------------------------------------ drops

    def drop_entries_now(self, victims: Sequence[tuple[bytes, int]], reason: str) -> DroppedEntries:
        """Inside a batch: delete the entries ``(author, seq)`` for good and record
        them as holes. Current document versions are never dropped."""
        dropped = DroppedEntries()
        by_feed: dict[bytes, list[int]] = {}
        for author, seq in victims:
            by_feed.setdefault(author, []).append(seq)
        for author, seqs in by_feed.items():
            row = self._feed_row(author)
            if row is None:
                continue
            feed_id = row[0]
            gone: list[int] = []
            gone_bytes = 0
            for seq in seqs:
                found = self._conn.execute(
                    "SELECT e.change, length(e.raw), c.name FROM entries e "
                    "JOIN collections c ON c.id = e.collection "
                    "WHERE e.feed = ? AND e.seq = ? AND e.change NOT IN "
                    "(SELECT change FROM doc_versions WHERE leaf = 1)",
                    (feed_id, seq),
                ).fetchone()
                if found is None:
                    continue
                change, size, collection = found
                self._conn.execute("DELETE FROM doc_versions WHERE change = ?", (change,))
                self._conn.execute("DELETE FROM entries WHERE change = ?", (change,))
                self._conn.execute(
                    "UPDATE collections SET entries = entries - 1 WHERE name = ?", (collection,)
                )
                gone.append(seq)
                gone_bytes += int(size)
                dropped.collections[collection] += 1
                dropped.entries += 1
                dropped.bytes += int(size)
            if not gone:
                continue
            ranges = merge_ranges(gone)
            self._conn.execute(
                "UPDATE feeds SET entries = entries - ?, bytes = bytes - ? WHERE id = ?",
                (len(gone), gone_bytes, feed_id),
            )
            self.add_holes_now(author, ranges, reason)
            dropped.feeds[author] = ranges
        return dropped
