"""Pure planning for the caller of a sync connection: what to offer, what to
ask for, in which order to send, and who may read or write what.

Nothing here does I/O. A store answers one question — which seqs of a feed
it holds within a window (:class:`HeldRanges`) — and these functions do the
rest::

    held = Holdings()                      # or an adapter over the SQLite store
    held.add(alice, 1, 10)
    plan_wants([Have(author=alice, from_seq=1, to_seq=15)], held)
    # → [Want(author=alice…, from_seq=11, to_seq=15)]

Access control sits in two places (see docs/protocol.md): the provider asks
:meth:`AccessPolicy.may_read` before each ENTRY it would send (and skips the
entry if not), the receiver asks :meth:`AccessPolicy.may_write` before it
stores an ENTRY (and refuses it if not).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from .events import Have, Want

__all__ = [
    "ALLOW_ALL",
    "AccessPolicy",
    "AllowAll",
    "FeedSummary",
    "HeldRanges",
    "Holdings",
    "RangeSet",
    "offer_from_changes",
    "offer_from_heads",
    "plan_wants",
    "wanted_entries",
]


class RangeSet:
    """Seqs of one feed as sorted, disjoint, inclusive ranges.

    >>> r = RangeSet()
    >>> r.add(1, 3); r.add(5); r.add(4)
    >>> list(r), 4 in r, r.missing(2, 8)
    ([(1, 5)], True, [(6, 8)])
    """

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, first: int, last: int | None = None) -> None:
        """Add ``first..last`` (just ``first`` when ``last`` is None), merging neighbours."""
        last = first if last is None else last
        if first > last:
            raise ValueError(f"range {first}..{last} is empty")
        starts, ends = self._starts, self._ends
        lo = bisect.bisect_left(ends, first - 1)  # first range that touches or follows
        hi = bisect.bisect_right(starts, last + 1)  # past the last range that touches
        if lo < hi:
            first = min(first, starts[lo])
            last = max(last, ends[hi - 1])
        starts[lo:hi] = [first]
        ends[lo:hi] = [last]

    def __contains__(self, seq: object) -> bool:
        if type(seq) is not int:
            return False
        i = bisect.bisect_right(self._starts, seq) - 1
        return i >= 0 and seq <= self._ends[i]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def __len__(self) -> int:
        """The number of ranges (not seqs; see :attr:`count`)."""
        return len(self._starts)

    @property
    def count(self) -> int:
        """The number of seqs held."""
        return sum(e - s + 1 for s, e in self)

    def within(self, first: int, last: int) -> list[tuple[int, int]]:
        """The held parts of ``first..last``."""
        starts, ends = self._starts, self._ends
        out = []
        for i in range(bisect.bisect_left(ends, first), len(starts)):
            if starts[i] > last:
                break
            out.append((max(first, starts[i]), min(last, ends[i])))
        return out

    def missing(self, first: int, last: int) -> list[tuple[int, int]]:
        """The parts of ``first..last`` not held."""
        return _complement(first, last, self.within(first, last))


def _complement(first: int, last: int, held: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out, cursor = [], first
    for start, end in held:
        if start > cursor:
            out.append((cursor, start - 1))
        cursor = max(cursor, end + 1)
    if cursor <= last:
        out.append((cursor, last))
    return out


class HeldRanges(Protocol):
    """What the planner needs from a store: the held parts of a window of a feed.

    Return sorted, disjoint ranges inside ``first..last``. Count as held what
    must not be asked for either — entries below a feed's prune watermark."""

    def held(self, author: bytes, first: int, last: int) -> Iterable[tuple[int, int]]: ...


class Holdings:
    """Per-feed :class:`RangeSet`\\ s: an in-memory :class:`HeldRanges`.

    >>> h = Holdings(); h.add(b"a" * 32, 1, 4); h.add(b"a" * 32, 9)
    >>> h.held(b"a" * 32, 2, 20), (b"a" * 32, 9) in h
    ([(2, 4), (9, 9)], True)
    """

    __slots__ = ("_feeds",)

    def __init__(self) -> None:
        self._feeds: dict[bytes, RangeSet] = {}

    def add(self, author: bytes, first: int, last: int | None = None) -> None:
        ranges = self._feeds.get(author)
        if ranges is None:
            ranges = self._feeds[author] = RangeSet()
        ranges.add(first, last)

    def held(self, author: bytes, first: int, last: int) -> list[tuple[int, int]]:
        ranges = self._feeds.get(author)
        return [] if ranges is None else ranges.within(first, last)

    def feed(self, author: bytes) -> RangeSet:
        """The ranges held of ``author``'s feed (empty if none)."""
        return self._feeds.get(author) or RangeSet()

    def authors(self) -> list[bytes]:
        """Feeds with anything held, sorted."""
        return sorted(self._feeds)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        ranges = self._feeds.get(key[0])
        return ranges is not None and key[1] in ranges


def plan_wants(haves: Iterable[Have], holdings: HeldRanges) -> list[Want]:
    """The minimal WANTs for an offer: every offered seq we do not hold, as few
    ranges as possible, in offer order (touching ranges of a feed merge)."""
    wants: list[Want] = []
    for have in haves:
        held = holdings.held(have.author, have.from_seq, have.to_seq)
        for first, last in _complement(have.from_seq, have.to_seq, held):
            previous = wants[-1] if wants else None
            if previous and previous.author == have.author and previous.to_seq + 1 == first:
                wants[-1] = Want(author=have.author, from_seq=previous.from_seq, to_seq=last)
            else:
                wants.append(Want(author=have.author, from_seq=first, to_seq=last))
    return wants


def wanted_entries(
    wants: Iterable[Want], holdings: HeldRanges | None = None
) -> Iterator[tuple[bytes, int]]:
    """``(author, seq)`` in the order a provider must send them: WANT order, seqs
    ascending. Lazy: state is one range, however much is wanted. With
    ``holdings``, only seqs held (a provider skips what it lacks)."""
    for want in wants:
        if holdings is None:
            spans: Iterable[tuple[int, int]] = [(want.from_seq, want.to_seq)]
        else:
            spans = holdings.held(want.author, want.from_seq, want.to_seq)
        for first, last in spans:
            for seq in range(first, last + 1):
                yield want.author, seq


def offer_from_changes(
    changes: Iterable[tuple[bytes, int]],
    *,
    exclude: HeldRanges | None = None,
    head_hash: Callable[[bytes, int], bytes | None] | None = None,
) -> list[Have]:
    """The HAVEs for entries stored after a checkpoint: ``changes`` yields
    ``(author, seq)`` of each (``LogStore.changes_since``). Consecutive seqs of a
    feed become one range; feeds come sorted. ``exclude`` removes entries the
    peer is known to hold (those it sent us this session — no echo);
    ``head_hash(author, seq)`` may supply each range's last hash."""
    changed = Holdings()
    for author, seq in changes:
        changed.add(author, seq)
    haves = []
    for author in changed.authors():
        for first, last in changed.feed(author):
            spans = [(first, last)]
            if exclude is not None:
                spans = _complement(first, last, exclude.held(author, first, last))
            for a, b in spans:
                digest = head_hash(author, b) if head_hash else None
                haves.append(Have(author=author, from_seq=a, to_seq=b, head_hash=digest))
    return haves


class FeedSummary(Protocol):
    """A feed as the store summarises it (``agent.store.FeedHead`` fits)."""

    @property
    def author(self) -> bytes: ...
    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> bytes: ...
    @property
    def low_seq(self) -> int: ...


def offer_from_heads(heads: Iterable[FeedSummary]) -> list[Have]:
    """The HAVEs for a first sync (``since = 0``): each feed's held span,
    ``low_seq..head``, with the head's hash. Gaps inside are the provider's to skip."""
    return [
        Have(author=h.author, from_seq=max(1, h.low_seq), to_seq=h.seq, head_hash=h.hash)
        for h in sorted(heads, key=lambda h: h.author)
        if h.seq >= max(1, h.low_seq)
    ]


class AccessPolicy(Protocol):
    """The access-control hook (fleet ACLs plug in here; allow-all for now).

    ``may_read``: may ``peer`` (its node key) receive entries of ``collection``?
    Asked by the provider before each ENTRY; a "no" skips the entry.
    ``may_write``: may ``author`` write ``collection``? Asked by the receiver
    before storing an ENTRY; a "no" refuses it (not stored, credit returned).
    """

    def may_read(self, peer: bytes, collection: str) -> bool: ...

    def may_write(self, author: bytes, collection: str) -> bool: ...


class AllowAll:
    """The policy until fleet ACLs exist: everyone reads and writes everything.

    >>> ALLOW_ALL.may_read(bytes(32), "readings/climate")
    True
    """

    def may_read(self, peer: bytes, collection: str) -> bool:
        return True

    def may_write(self, author: bytes, collection: str) -> bool:
        return True


ALLOW_ALL = AllowAll()
