"""The default sink: the cloud node's own Lichen log (SQLite, in its home).

Entries go through the node's :class:`~agent.store.writer.LogWriter`, so the
store's own rules apply unchanged: ``(author, seq)`` unique, the same bytes
again a no-op, different bytes a fork recorded as evidence, ``prev`` and
timestamps checked against stored neighbours. Holes and contiguity are the
store's (:meth:`~agent.store.delivery.Delivery.add_holes_now`,
:meth:`~agent.store.delivery.Delivery.contiguous_seq`); the acknowledged seq
per feed is kept in the store's ``uplink_acks`` table (this cloud being the
acknowledging cloud), so ``lichen status`` reads it like a board's.

One worker per SQLite sink: several workers on one shared subscription need
the PostgreSQL sink (each worker's log would hold only its share).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..clock import pack
from ..entry import Entry
from ..errors import LichenError, StoreError
from ..store.commands import MarkAcked
from ..store.log_store import InsertOutcome, LogStore
from ..store.writer import LogWriter
from .core import Accepted, acked_feed
from .sink import EntryQuery, FeedInfo, FeedProgress, SinkError, StoreResult, over_quota

__all__ = ["SqliteReader", "SqliteSink"]

_MAX_TS = 2**63 - 1


class SqliteReader:
    """Read side over a :class:`LogStore` (the caller's, or one it opens)."""

    def __init__(self, store: LogStore, own: bytes, *, owned: bool = False) -> None:
        self.store = store
        self.own = own
        self._owned = owned

    def feeds(self) -> list[FeedInfo]:
        acked = self.store.delivery.acked()
        out = []
        for head in self.store.heads():
            done = acked.get(head.author, 0)
            out.append(
                FeedInfo(
                    author=head.author,
                    entries=head.entries,
                    bytes=head.bytes,
                    head_seq=head.seq,
                    contiguous_seq=self.store.delivery.contiguous_seq(head.author, done),
                    acked_seq=done,
                    own=head.author == self.own,
                )
            )
        return out

    def totals(self) -> tuple[int, int]:
        return self.store.totals()

    def entries(self, query: EntryQuery) -> Iterator[Entry]:
        if query.collection is not None:
            names = [query.collection]
        else:
            names = [name for name, _ in self.store.collections() if not name.startswith("_")]
        since = 0 if query.since_ms is None else pack(max(0, query.since_ms))
        until = _MAX_TS if query.until_ms is None else pack(max(0, query.until_ms))
        for name in names:
            for entry in self.store.by_time(name, since, until):
                if query.author is None or entry.author == query.author:
                    yield entry

    def close(self) -> None:
        if self._owned:
            self.store.close()


class SqliteSink:
    """Stores into the node's own log through its writer."""

    name = "sqlite"

    def __init__(
        self, writer: LogWriter, path: Path, *, max_entry_size: int, quota: int = 0
    ) -> None:
        self.writer = writer
        self.path = path
        self.max_entry_size = max_entry_size
        self.quota = quota
        self.own = writer.identity.node_id.key
        self._acks: dict[bytes, tuple[int, bytes]] = {}
        self._contiguous: dict[bytes, int] = {}

    async def open(self) -> None:
        """Load the current acknowledgements from our own feed (one pass; the
        feed is compacted first, so it holds about one entry per feed)."""
        try:
            self._acks = await self.writer.execute(LoadAcks(self.own))
        except (StoreError, OSError) as exc:
            raise SinkError(f"{self.path}: cannot read the acknowledgements: {exc}") from exc
        self._contiguous = {feed: seq for feed, (seq, _) in self._acks.items()}

    async def close(self) -> None:
        return None

    async def store(self, accepted: Sequence[Accepted]) -> StoreResult:
        quota, own = self.quota, self.own
        # one request for the message's entries (each refused on its own): a future
        # per entry cost the event loop more than the insert itself
        try:
            outcomes = await self.writer.execute_many(
                [InsertWithinQuota(a.entry, quota, own) for a in accepted]
            )
        except (LichenError, OSError) as exc:
            raise SinkError(f"{self.path}: storing failed: {exc}") from exc
        holes = [
            (a.entry.author, a.holes, a.hole_reason or "dropped by its author")
            for a, outcome in zip(accepted, outcomes, strict=True)
            if a.holes and not isinstance(outcome, ValueError)
        ]
        authors = sorted({a.entry.author for a in accepted})
        known = {a: self._contiguous.get(a, 0) for a in authors}
        try:
            state = await self.writer.execute(Progress(holes, known))
        except (StoreError, OSError) as exc:
            raise SinkError(f"{self.path}: computing contiguity failed: {exc}") from exc
        feeds = {}
        for author, (contiguous, acked) in state.items():
            self._contiguous[author] = contiguous
            feeds[author] = FeedProgress(author, contiguous, acked, cloud=author == self.own)
        return StoreResult(outcomes, feeds)

    async def record_acks(self, acks: Sequence[Entry]) -> None:
        found = [(f, e) for e in acks if (f := acked_feed(e)) is not None]
        try:
            await self.writer.execute(MarkAcked([f for f, _ in found], self.own))
        except (StoreError, OSError) as exc:
            raise SinkError(f"{self.path}: recording acknowledgements failed: {exc}") from exc
        for (feed, seq), entry in found:
            if seq >= self._acks.get(feed, (-1, b""))[0]:
                self._acks[feed] = (seq, entry.raw)

    async def current_acks(self, feeds: Sequence[bytes]) -> dict[bytes, tuple[int, bytes]]:
        return {f: self._acks[f] for f in feeds if f in self._acks}

    def reader(self) -> SqliteReader:
        store = LogStore(self.path, max_entry_size=self.max_entry_size)
        return SqliteReader(store, self.own, owned=True)


# ------------------------------------------------------------- the sink's writes


@dataclass(frozen=True, slots=True)
class LoadAcks:
    """A write (:mod:`agent.store.commands`), at open: compact our own feed, read
    the acknowledgement it holds per feed, and record any that a crash kept from
    ``uplink_acks`` (signed, then not recorded)."""

    own: bytes

    def apply(self, store: LogStore) -> dict[bytes, tuple[int, bytes]]:
        own = self.own
        head = store.head(own)
        if head is not None:
            store.prune_now(own, head.seq)
        current: dict[bytes, tuple[int, bytes]] = {}
        for entry in store.feed(own):
            found = acked_feed(entry)
            if found is not None and found[1] >= current.get(found[0], (-1, b""))[0]:
                current[found[0]] = (found[1], entry.raw)
        recorded = store.delivery.acked()
        for feed, (seq, _raw) in current.items():
            if seq > recorded.get(feed, 0):
                store.delivery.record_ack_now(feed, seq, own)
        return current


@dataclass(frozen=True, slots=True)
class InsertWithinQuota:
    """A write: store ``entry`` unless it is new and its author's feed would pass
    ``quota`` bytes (0: no quota; our own feed has none)."""

    entry: Entry
    quota: int
    own: bytes

    def apply(self, store: LogStore) -> InsertOutcome:
        entry = self.entry
        if self.quota and entry.author != self.own:
            held = store.feed_bytes_now(entry.author)
            refusal = over_quota(entry.author, held, len(entry.raw), self.quota)
            if refusal is not None and store.get(entry.author, entry.seq) is None:
                raise refusal
        return store.insert_now(entry)


@dataclass(frozen=True, slots=True)
class Progress:
    """A write: record ``holes`` (author, ranges, reason), then per author of
    ``known`` (its contiguous seq known so far) that is held, ``(contiguous seq,
    acknowledged seq)``."""

    holes: Sequence[tuple[bytes, Sequence[tuple[int, int]], str]]
    known: Mapping[bytes, int]

    def apply(self, store: LogStore) -> dict[bytes, tuple[int, int]]:
        for author, ranges, reason in self.holes:
            store.delivery.add_holes_now(author, ranges, reason)
        acked = store.delivery.acked()
        return {
            a: (store.delivery.contiguous_seq(a, seen), acked.get(a, 0))
            for a, seen in self.known.items()
            if store.head(a) is not None
        }
