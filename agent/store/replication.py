"""What the sync protocol asks of the store: offers, gaps, raw ranges, checkpoints.

A provider offers per feed the range of seqs it can give (:meth:`offer_all`),
or — when the peer says which of our change counters it has already fully
received — only the feeds and ranges touched since then (:meth:`offer_since`),
so a repeat sync costs O(what changed). A receiver turns an offered range into
the sub-ranges it lacks (:meth:`missing`), never below a feed's prune
watermark. The provider then streams the raw bytes of the wanted ranges
(:meth:`raw_range`). A receiver that has stored everything a round offered
records the peer's change counter as its checkpoint (``sync_checkpoints``).

A part of :class:`~agent.store.log_store.LogStore`, reached as ``store.replication``;
the write (:meth:`Replication.set_checkpoint_now`) runs inside ``LogStore.batch``
(in the agent: the writer's :class:`~agent.store.commands.SetCheckpoint`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .reads import Stream

__all__ = ["FeedRange", "Replication"]


@dataclass(frozen=True, slots=True)
class FeedRange:
    """Seqs ``from_seq`` … ``to_seq`` of ``author``'s feed (held, offered or wanted)."""

    author: bytes
    from_seq: int
    to_seq: int

    def __post_init__(self) -> None:
        if not 1 <= self.from_seq <= self.to_seq:
            raise ValueError(f"bad feed range {self.from_seq}…{self.to_seq}")

    @property
    def count(self) -> int:
        return self.to_seq - self.from_seq + 1


class Replication:
    """The replication part of a :class:`~agent.store.log_store.LogStore`
    (``store.replication``): what sync offers, lacks, sends, and the checkpoints."""

    def __init__(self, conn: sqlite3.Connection, stream: Stream) -> None:
        self._conn = conn
        self._stream = stream

    def offer_all(self) -> list[FeedRange]:
        """For every feed, the span of seqs held (gaps inside are skipped when sending)."""
        rows = self._conn.execute(  # O(feeds): the lowest seq comes from the (feed, seq) index
            "SELECT author, (SELECT min(seq) FROM entries WHERE feed = feeds.id), head_seq "
            "FROM feeds WHERE entries > 0 ORDER BY author"
        ).fetchall()
        return [FeedRange(bytes(a), lo, hi) for a, lo, hi in rows if lo is not None]

    def offer_since(self, change: int) -> list[FeedRange]:
        """The feeds and seq spans of the entries stored after local change ``change``."""
        rows = self._conn.execute(
            "SELECT f.author, min(e.seq), max(e.seq) FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE e.change > ? GROUP BY e.feed ORDER BY f.author",
            (change,),
        ).fetchall()
        return [FeedRange(bytes(a), lo, hi) for a, lo, hi in rows]

    def missing(self, offered: FeedRange) -> list[FeedRange]:
        """The parts of ``offered`` we neither hold nor pruned on purpose."""
        row = self._conn.execute(
            "SELECT id, low_seq FROM feeds WHERE author = ?", (offered.author,)
        ).fetchone()
        if row is None:
            return [offered]
        feed_id, low_seq = row
        start = max(offered.from_seq, low_seq)
        if start > offered.to_seq:
            return []
        (held,) = self._conn.execute(
            "SELECT count(*) FROM entries WHERE feed = ? AND seq BETWEEN ? AND ?",
            (feed_id, start, offered.to_seq),
        ).fetchone()
        if held == offered.to_seq - start + 1:
            return []
        holes = self._conn.execute(
            "SELECT from_seq, to_seq FROM holes WHERE feed = ? AND to_seq >= ? AND from_seq <= ? "
            "ORDER BY from_seq",
            (feed_id, start, offered.to_seq),
        ).fetchall()
        return _without_holes(self._gaps(feed_id, offered, start, held), holes)

    def _gaps(self, feed_id: int, offered: FeedRange, start: int, held: int) -> list[FeedRange]:
        if held == 0:
            return [FeedRange(offered.author, start, offered.to_seq)]
        gaps: list[FeedRange] = []
        expected = start
        for (seq,) in self._stream(
            "SELECT seq FROM entries WHERE feed = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (feed_id, start, offered.to_seq),
        ):
            if seq > expected:
                gaps.append(FeedRange(offered.author, expected, seq - 1))
            expected = seq + 1
        if expected <= offered.to_seq:
            gaps.append(FeedRange(offered.author, expected, offered.to_seq))
        return gaps

    def raw_range(self, wanted: FeedRange) -> Iterator[bytes]:
        """The raw bytes of the entries held in ``wanted``, in seq order (streamed)."""
        for (raw,) in self._stream(
            "SELECT e.raw FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE f.author = ? AND e.seq BETWEEN ? AND ? ORDER BY e.seq",
            (wanted.author, wanted.from_seq, wanted.to_seq),
        ):
            yield bytes(raw)

    def raw_chunk(
        self, author: bytes, first: int, last: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """Up to ``limit`` ``(seq, raw)`` of ``author``'s entries held in ``first..last``,
        in seq order: a provider streams a wanted range chunk by chunk with this."""
        rows = self._conn.execute(
            "SELECT e.seq, e.raw FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE f.author = ? AND e.seq BETWEEN ? AND ? ORDER BY e.seq LIMIT ?",
            (author, first, last, limit),
        ).fetchall()
        return [(int(seq), bytes(raw)) for seq, raw in rows]

    def held(self, author: bytes, first: int, last: int) -> list[tuple[int, int]]:
        """The parts of ``first..last`` not to ask for: held, or below the prune watermark."""
        out, cursor = [], first
        for gap in self.missing(FeedRange(author, first, last)):
            if gap.from_seq > cursor:
                out.append((cursor, gap.from_seq - 1))
            cursor = gap.to_seq + 1
        if cursor <= last:
            out.append((cursor, last))
        return out

    def checkpoint(self, peer: bytes) -> int:
        """The peer's change counter up to which we received everything it offered."""
        row = self._conn.execute(
            "SELECT change FROM sync_checkpoints WHERE peer = ?", (peer,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def checkpoints(self) -> dict[bytes, int]:
        return {
            bytes(p): int(c)
            for p, c in self._conn.execute("SELECT peer, change FROM sync_checkpoints")
        }

    def set_checkpoint_now(self, peer: bytes, change: int) -> None:
        """Inside a batch: record that everything ``peer`` offered up to its
        change ``change`` is stored (checkpoints never move backwards)."""
        self._conn.execute(
            "INSERT INTO sync_checkpoints (peer, change, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (peer) DO UPDATE SET change = max(change, excluded.change), "
            "updated_at = excluded.updated_at",
            (peer, change, time.time_ns() // 1_000_000),
        )

    def forget_checkpoint_now(self, peer: bytes | None) -> None:
        """Inside a batch: drop ``peer``'s checkpoint (None: every peer's), so the
        next sync with it starts from 0."""
        if peer is None:
            self._conn.execute("DELETE FROM sync_checkpoints")
        else:
            self._conn.execute("DELETE FROM sync_checkpoints WHERE peer = ?", (peer,))


def _without_holes(gaps: list[FeedRange], holes: list[tuple[int, int]]) -> list[FeedRange]:
    """``gaps`` minus the seq ranges in ``holes`` (entries gone for good)."""
    if not holes:
        return gaps
    out: list[FeedRange] = []
    for gap in gaps:
        cursor = gap.from_seq
        for first, last in holes:
            if last < cursor or first > gap.to_seq:
                continue
            if first > cursor:
                out.append(FeedRange(gap.author, cursor, first - 1))
            cursor = max(cursor, last + 1)
        if cursor <= gap.to_seq:
            out.append(FeedRange(gap.author, cursor, gap.to_seq))
    return out
