"""The node's log as a sync session sees it: bounded reads, and the writer."""

from __future__ import annotations

from collections.abc import Iterator

from ..entry import Entry, decode_entry
from ..store.log_store import LogStore
from ..store.writer import LogWriter

__all__ = ["READ_CHUNK", "SessionLog"]

READ_CHUNK = 256  # entries read from SQLite at a time when streaming


class SessionLog:
    """The log as a session sees it: a read connection and the writer."""

    def __init__(self, reader: LogStore, writer: LogWriter) -> None:
        self.reader, self.writer = reader, writer
        self.max_entry_size = reader.max_entry_size

    def held(self, author: bytes, first: int, last: int) -> list[tuple[int, int]]:
        return self.reader.held(author, first, last)

    def entries(self, author: bytes, first: int, last: int) -> Iterator[Entry]:
        """The held entries of ``first..last``, read :data:`READ_CHUNK` at a time."""
        seq = first
        while seq <= last:
            rows = self.reader.raw_chunk(author, seq, last, READ_CHUNK)
            for _, raw in rows:
                yield decode_entry(raw, max_size=len(raw), strict=False)
            if len(rows) < READ_CHUNK:
                return
            seq = rows[-1][0] + 1

    def hash_at(self, author: bytes, seq: int) -> bytes | None:
        entry = self.reader.get(author, seq)
        return None if entry is None else entry.hash
