"""Where the cloud keeps what it ingests: one small interface, two sinks.

A :class:`Sink` stores verified entries exactly once, keyed by ``(author,
seq)``, applying the same chain and fork rules as
:meth:`agent.store.log_store.LogStore.insert_now`; it records the holes an
author declared in its own feed, and answers, per feed, the highest
contiguous seq held and the current acknowledgement. A :class:`SinkReader`
is its read side for the HTTP API and ``lichen status``: synchronous, used by
one thread at a time, streaming from a cursor.

* :mod:`agent.cloud.sqlite_sink` — the cloud node's own Lichen log (default);
* :mod:`agent.cloud.postgres_sink` — PostgreSQL, for several workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..entry import Entry
from ..errors import LichenError
from ..identity import NodeId
from ..store.log_store import InsertOutcome
from .core import Accepted

__all__ = [
    "EntryQuery",
    "FeedInfo",
    "FeedProgress",
    "QuotaExceeded",
    "Sink",
    "SinkError",
    "SinkReader",
    "StoreResult",
    "over_quota",
]


class SinkError(LichenError):
    """The sink cannot store or read right now (database down, disk full). Nothing
    was acknowledged; the caller retries the same batch later."""


class QuotaExceeded(LichenError, ValueError):
    """An entry would take its author past ``[cloud] board_quota``: refused (what
    is stored stays, and the same entry again later is stored if there is room)."""

    def __init__(self, author: bytes, held: int, size: int, quota: int) -> None:
        self.reason = (
            f"board {NodeId(author)} has {held} bytes stored, and this {size}-byte entry "
            f"would pass its quota of {quota} bytes ([cloud] board_quota)"
        )
        super().__init__(self.reason)


def over_quota(author: bytes, held: int, size: int, quota: int) -> QuotaExceeded | None:
    """The refusal when ``size`` more bytes take ``author`` past ``quota`` (0: none)."""
    if quota and held + size > quota:
        return QuotaExceeded(author, held, size, quota)
    return None


@dataclass(frozen=True, slots=True)
class FeedProgress:
    """A feed touched by a stored batch: its contiguous seq after the batch and
    what is acknowledged; ``cloud``: the feed is a cloud worker's (never acked)."""

    author: bytes
    contiguous: int
    acked: int
    cloud: bool = False


@dataclass(slots=True)
class StoreResult:
    """Per accepted entry (same order): its outcome or the error refusing it
    (:class:`~agent.errors.ForkError`, :class:`~agent.errors.ChainError`); per
    feed touched: its progress."""

    outcomes: list[InsertOutcome | ValueError]
    feeds: dict[bytes, FeedProgress]


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What the cloud holds of one feed (``/v1/feeds``, ``lichen status``)."""

    author: bytes
    entries: int
    bytes: int
    head_seq: int
    contiguous_seq: int
    acked_seq: int
    own: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "node_id": str(NodeId(self.author)),
            "entries": self.entries,
            "bytes": self.bytes,
            "head_seq": self.head_seq,
            "contiguous_seq": self.contiguous_seq,
            "acked_seq": self.acked_seq,
            "own": self.own,
        }


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """Entries of reading collections: by author, collection and a timestamp window.

    ``since_ms`` / ``until_ms`` bound the *entry* timestamps' physical part
    (milliseconds); None = unbounded. ``collection`` None = every collection
    whose name does not start with ``_``."""

    author: bytes | None = None
    collection: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


class SinkReader(Protocol):
    """Read access to a sink. Synchronous: call from a worker thread."""

    def feeds(self) -> list[FeedInfo]: ...

    def totals(self) -> tuple[int, int]:
        """``(entries, bytes)`` held."""
        ...

    def entries(self, query: EntryQuery) -> Iterator[Entry]:
        """Matching entries in (collection, timestamp) order, streamed."""
        ...

    def close(self) -> None: ...


class Sink(Protocol):
    """The write side, driven by :class:`agent.cloud.ingest.Ingestor`."""

    name: str

    async def open(self) -> None:
        """Connect and create what is missing (tables, schema). Raises SinkError."""
        ...

    async def close(self) -> None: ...

    async def store(self, accepted: Sequence[Accepted]) -> StoreResult:
        """Store ``accepted`` (in one transaction where the sink can), apply the
        holes of the stored or already held ``_drops`` entries, and report the
        contiguity of every feed touched. An entry that is not held yet and would
        take its author past the board quota is refused (:class:`QuotaExceeded`
        in its outcome). Raises SinkError (nothing to ack)."""
        ...

    async def record_acks(self, acks: Sequence[Entry]) -> None:
        """The cloud signed these ``_acks`` entries: make them the current ones."""
        ...

    async def current_acks(self, feeds: Sequence[bytes]) -> dict[bytes, tuple[int, bytes]]:
        """Per feed: the acknowledged seq and the current ack entry's bytes."""
        ...

    def reader(self) -> SinkReader:
        """A new read connection (the caller closes it; may block: use a thread)."""
        ...
