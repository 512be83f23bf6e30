"""The node's log as a sync session sees it: bounded reads, and the writer."""

from __future__ import annotations

from collections.abc import Sequence

from ..entry import Entry, entry_hash
from ..entry_lazy import decode_lazily
from ..store.log_store import LogStore
from ..store.writer import LogWriter

__all__ = ["SessionLog"]


class SessionLog:
    """The log as a session sees it: a read connection and the writer.

    It answers the driver's reads (it is an :class:`agent.sync.SyncLog`) on
    the event loop's thread, each a bounded query; writes go through the
    single writer."""

    def __init__(self, reader: LogStore, writer: LogWriter) -> None:
        self.reader, self.writer = reader, writer
        self.max_entry_size = reader.max_entry_size

    def offer(self, since: int) -> tuple[int, list[tuple[bytes, int, int]]]:
        """The change counter (read first: nothing stored after it is missed), and per
        feed touched after change ``since`` the span of its entries stored since
        (``since`` = 0: every feed's held span) — O(feeds), gaps skipped when sending."""
        change = self.reader.last_change()
        replication = self.reader.replication
        spans = replication.offer_since(since) if since else replication.offer_all()
        return change, [(span.author, span.from_seq, span.to_seq) for span in spans]

    def clouds(self) -> frozenset[bytes]:
        """The authors of the acknowledgements held (``_acks`` entries): the clouds
        this node knows, whose feeds a session asks for right after the peer's own."""
        from ..uplink.wire import ACKS_COLLECTION

        rows = self.reader.connection.execute(
            "SELECT DISTINCT f.author FROM entries e JOIN feeds f ON f.id = e.feed "
            "WHERE e.collection = (SELECT id FROM collections WHERE name = ?)",
            (ACKS_COLLECTION,),
        )
        return frozenset(bytes(author) for (author,) in rows)

    def held(self, author: bytes, first: int, last: int) -> list[tuple[int, int]]:
        return self.reader.replication.held(author, first, last)

    def hashes(self, keys: Sequence[tuple[bytes, int]]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for author, seq in keys:
            rows = self.reader.replication.raw_chunk(author, seq, seq, 1)
            out.append(entry_hash(rows[0][1]) if rows else None)
        return out

    def entries(self, author: bytes, first: int, last: int, limit: int) -> list[Entry]:
        """Up to ``limit`` held entries of ``first..last``, in one query (to be sent:
        their bodies are decoded only if something reads them)."""
        return [
            decode_lazily(raw, max_size=len(raw))
            for _, raw in self.reader.replication.raw_chunk(author, first, last, limit)
        ]
