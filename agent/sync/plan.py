"""Pure planning for the sync driver: ranges of seqs, what to ask for, and
who may read or write what.

Nothing here does I/O. A log answers which parts of an offered range it
holds (``SyncLog.held``), and :func:`plan_wants` turns the answers into the
fewest WANTs::

    plan_wants([Have(author=alice, from_seq=1, to_seq=15)], [[(1, 10)]])
    # → [Want(author=alice…, from_seq=11, to_seq=15)]

Access control has one seam, :class:`AccessPolicy`: the provider asks
``may_read`` before each ENTRY it would send, the receiver asks ``may_write``
before it stores one (see docs/protocol.md, "Access hooks").
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from .events import Have, Want
from .rounds import MAX_RANGES

__all__ = [
    "ALLOW_ALL",
    "AccessPolicy",
    "AllowAll",
    "Holdings",
    "RangeSet",
    "by_priority",
    "count_forks",
    "fork_tips",
    "plan_wants",
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
        if ends and ends[-1] == first - 1:  # the common case: it extends the last range
            ends[-1] = last
            return
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


class Holdings:
    """Per-feed :class:`RangeSet`\\ s: seqs held, or seen, of many feeds.

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


def plan_wants(
    haves: Sequence[Have],
    held: Sequence[Iterable[tuple[int, int]]],
    max_ranges: int = MAX_RANGES,
) -> list[Want]:
    """The fewest WANTs for an offer: every offered seq not held (``held[i]`` are
    the sorted parts of ``haves[i]`` we hold), in offer order (touching ranges of
    a feed merge), and never more than ``max_ranges`` — a round's limit.

    A holding too fragmented for that (every other seq held, against a long
    offer) would need more; then neighbouring WANTs inside one offered range
    are merged, those with the fewest held seqs between them first, until they
    fit. The held entries a merged WANT covers come again, and are stored as
    duplicates: a few entries sent twice rather than a session refused.
    """
    wants: list[Want] = []
    spans: list[int] = []  # per want, the offered range it lies in (touching HAVEs merge)
    span = -1
    for index, (have, parts) in enumerate(zip(haves, held, strict=True)):
        previous = haves[index - 1] if index else None
        if not (
            previous and previous.author == have.author and previous.to_seq + 1 == have.from_seq
        ):
            span += 1
        for first, last in _complement(have.from_seq, have.to_seq, parts):
            last_want = wants[-1] if wants else None
            if last_want and last_want.author == have.author and last_want.to_seq + 1 == first:
                wants[-1] = Want(author=have.author, from_seq=last_want.from_seq, to_seq=last)
            else:
                wants.append(Want(author=have.author, from_seq=first, to_seq=last))
                spans.append(span)
    excess = len(wants) - max_ranges
    return wants if excess <= 0 else _merge_cheapest(wants, spans, excess)


def by_priority(wants: list[Want], peer: bytes, clouds: frozenset[bytes]) -> list[Want]:
    """``wants`` in the order a contact cut short should have them: the peer's
    own feed, then the clouds' (their acknowledgements), then the others' —
    stable, so each feed's wants keep their ascending order."""
    return sorted(wants, key=lambda w: 0 if w.author == peer else 1 if w.author in clouds else 2)


def fork_tips(haves: Sequence[Have], held: Sequence[Sequence[tuple[int, int]]]) -> list[Have]:
    """The offered ranges whose head hash can be checked: their last seq is held."""
    return [
        have
        for have, ranges in zip(haves, held, strict=True)
        if have.head_hash is not None and ranges and ranges[-1][1] == have.to_seq
    ]


def count_forks(tips: Sequence[Have], hashes: Sequence[bytes | None]) -> int:
    """How many of ``tips`` name a head hash other than the entry held there."""
    return sum(
        1
        for have, mine in zip(tips, hashes, strict=True)
        if mine is not None and mine != have.head_hash
    )


def _merge_cheapest(wants: list[Want], spans: list[int], count: int) -> list[Want]:
    """``wants`` with ``count`` neighbours inside one offered range merged, the
    ones with the fewest seqs between them first (as many as there are)."""
    gaps = (
        (wants[i + 1].from_seq - wants[i].to_seq - 1, i)
        for i in range(len(wants) - 1)
        if spans[i] == spans[i + 1]
    )
    joined = {i for _, i in heapq.nsmallest(count, gaps)}
    merged: list[Want] = []
    for i, want in enumerate(wants):
        if i - 1 in joined:
            first = merged[-1]
            merged[-1] = Want(author=want.author, from_seq=first.from_seq, to_seq=want.to_seq)
        else:
            merged.append(want)
    return merged


class AccessPolicy(Protocol):
    """Who may read and write what: the one access seam of a sync session.

    ``may_read(peer, collection)``: may ``peer`` (its node key) receive entries
    of ``collection`` from us? Asked by the provider before it sends each
    wanted entry. "No" skips the entry silently: the receiver sees a gap, which
    the protocol allows, and is not told why.

    ``may_write(author, collection, seq)``: may the entry ``seq`` of ``author``'s
    feed, of ``collection``, be stored here? (The seq lets a revoked author's
    entries from before its revocation still travel: see docs/fleet.md.)
    Asked by the receiver of each ENTRY before it
    stores it. "No" refuses the entry: it is not stored, counted in
    ``entries_refused``, its credit is returned, and the session goes on — a
    refusal by policy is a difference of rules between two nodes (access
    rules that have not reached the peer yet), not a sign that the peer is
    broken. (An entry that fails verification — signature, chain, fork — is
    different: it ends the session with ERROR, and the peer is penalised.)

    Offers are not filtered: a HAVE names no collection. Both questions are
    asked on the event loop for every entry: answer from memory, quickly.
    """

    def may_read(self, peer: bytes, collection: str) -> bool: ...

    def may_write(self, author: bytes, collection: str, seq: int) -> bool: ...


class AllowAll:
    """The policy until fleet ACLs exist: everyone reads and writes everything.

    >>> ALLOW_ALL.may_read(bytes(32), "readings/climate")
    True
    """

    def may_read(self, peer: bytes, collection: str) -> bool:
        return True

    def may_write(self, author: bytes, collection: str, seq: int) -> bool:
        return True


ALLOW_ALL = AllowAll()
