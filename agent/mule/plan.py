"""What a phone carries next from a board: chosen by priority within a byte budget.

:func:`plan_carry` reads the log (sizes only, through the ``(feed, seq)``
index) and decides, per feed, the seqs the next bundle holds; :func:`rows`
then reads those entries' bytes in bounded queries, in the ``(author, seq)``
order a bundle needs. Blocking SQLite reads: run them off the event loop.

**What is carried.** Per feed, the entries above both the phone's cursor and
what an accepted cloud already acknowledged; never the clouds' own feeds (the
cloud wrote them). **In which order the budget goes** — as on a BLE contact
window (docs/ble.md): the board's own feed first (its newest readings), then
the other feeds it holds for others, by key; within a feed, oldest first, so
each bundle continues the chains the cloud holds. Only the budget's choice
follows the priority: the bundle itself lists feeds by key, as the format
requires.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass, field

from ..bundle.export import collection_filter, feed_rows
from ..bundle.format import CHUNK_TARGET
from ..store.log_store import LogStore
from .cursor import PREFIX, Cursor

__all__ = ["CarryPlan", "Pending", "pending", "plan_carry", "rows"]

_ROWS = 128
#: bundle bytes besides the entries: magic, header (sealed key), manifest, trailer
_FIXED = 1024
_PER_FEED = 80  # a manifest span
_PER_CHUNK = 5 + 5 + 16 + 9  # frame head, chunk head, seal MAC, array head


@dataclass
class CarryPlan:
    """Per feed key, the seqs ``(after, upto]`` the next bundle covers (only the
    ``collections`` chosen, if any), the entries and bytes that makes, and the
    cursor the phone keeps once it has the bundle whole."""

    spans: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    entries: int = 0
    entry_bytes: int = 0
    cursor: Cursor | None = None
    complete: bool = True  # False: the budget stopped it; more is waiting
    first_too_large: int = 0  # the entry that did not fit an empty bundle (bytes)


@dataclass(frozen=True)
class Pending:
    """What a phone with a cursor has not carried yet."""

    entries: int
    bytes: int
    feeds: int


def _feeds(store: LogStore, own: bytes, clouds: Collection[bytes]) -> list[tuple[int, bytes, int]]:
    """``(feed id, author, head seq)`` of the feeds to carry, own first."""
    rows = store.connection.execute("SELECT id, author, head_seq FROM feeds ORDER BY author")
    feeds = [(int(i), bytes(a), int(h)) for i, a, h in rows if bytes(a) not in clouds]
    return sorted(feeds, key=lambda f: f[1] != own)


def _start(cursor: Cursor, author: bytes, acked: int, shared: set[bytes]) -> int:
    after = 0 if author[:PREFIX] in shared else cursor.after(author)
    return max(after, acked)


def _shared_prefixes(feeds: Sequence[tuple[int, bytes, int]]) -> set[bytes]:
    seen: set[bytes] = set()
    shared: set[bytes] = set()
    for _, author, _ in feeds:
        prefix = author[:PREFIX]
        (shared if prefix in seen else seen).add(prefix)
    return shared


def pending(
    store: LogStore,
    cursor: Cursor,
    *,
    own: bytes,
    clouds: Collection[bytes],
    collections: Sequence[str] = (),
) -> Pending:
    """The entries and bytes above ``cursor`` (and the clouds' acknowledgements)."""
    feeds = _feeds(store, own, clouds)
    shared = _shared_prefixes(feeds)
    acked = store.delivery.acked()
    where, params = collection_filter(store, collections)
    entries = size = carried = 0
    for feed_id, author, head in feeds:
        start = _start(cursor, author, acked.get(author, 0), shared)
        if start >= head:
            continue
        n, b = store.connection.execute(
            f"SELECT count(*), coalesce(sum(length(raw)), 0) FROM entries WHERE feed = ? "
            f"AND seq > ?{where}",
            (feed_id, start, *params),
        ).fetchone()
        entries, size, carried = entries + int(n), size + int(b), carried + (int(n) > 0)
    return Pending(entries, size, carried)


def plan_carry(
    store: LogStore,
    cursor: Cursor,
    budget: int,
    *,
    own: bytes,
    clouds: Collection[bytes],
    collections: Sequence[str] = (),
) -> CarryPlan:
    """The next bundle's spans within ``budget`` bytes (the whole bundle, frames
    and manifest included)."""
    feeds = _feeds(store, own, clouds)
    shared = _shared_prefixes(feeds)
    acked = store.delivery.acked()
    where, params = collection_filter(store, collections)
    plan = CarryPlan()
    used = _FIXED + _PER_CHUNK
    carried: list[tuple[bytes, int]] = []
    for feed_id, author, head in feeds:
        start = _start(cursor, author, acked.get(author, 0), shared)
        upto, after = start, start
        while plan.complete and after < head:
            batch = store.connection.execute(
                f"SELECT seq, length(raw) FROM entries WHERE feed = ? AND seq > ?{where} "
                "ORDER BY seq LIMIT ?",
                (feed_id, after, *params, _ROWS),
            ).fetchall()
            for seq, size in batch:
                cost = int(size) + 3 + (_PER_FEED if upto == start else 0)
                # chunks close before a larger entry: count one per half target
                if used + cost + (used // (CHUNK_TARGET // 2)) * _PER_CHUNK > budget:
                    plan.complete = False
                    if not plan.entries:
                        plan.first_too_large = int(size)
                    break
                used += cost
                upto = int(seq)
                plan.entries += 1
                plan.entry_bytes += int(size)
            if len(batch) < _ROWS:
                if plan.complete:
                    upto = head  # what lies above, in other collections, is passed over
                break
            after = int(batch[-1][0])
        if upto > start:
            plan.spans[author] = (start, upto)
            carried.append((author, upto))
        if not plan.complete:
            break
    plan.cursor = cursor.advanced(carried)
    return plan


def rows(
    store: LogStore, plan: CarryPlan, collections: Sequence[str] = ()
) -> Generator[tuple[bytes, int, bytes]]:
    """``(author, seq, raw)`` of the planned entries, by author then seq."""
    where, params = collection_filter(store, collections)
    for author in sorted(plan.spans):
        after, upto = plan.spans[author]
        row = store.connection.execute("SELECT id FROM feeds WHERE author = ?", (author,))
        found = row.fetchone()
        if found is None:
            continue
        for seq, raw in feed_rows(store, int(found[0]), after, upto, where=where, params=params):
            yield author, seq, raw
