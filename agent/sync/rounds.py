"""What a connection remembers about rounds and credit, to enforce the rules
the state tables cannot: ranges, order and flow control.

Memory is bounded by the number of *ranges* in one round (at most
``max_ranges`` offered and as many wanted), never by the number or size of
the entries they cover: a WANT for a million entries is one range. Methods
check everything before they change anything, and raise
:class:`~agent.errors.LocalProtocolError`; the connection re-raises that as
:class:`~agent.errors.RemoteProtocolError` when the peer sent the message.
"""

from __future__ import annotations

import bisect
from collections import deque

from ..errors import LocalProtocolError
from ..identity import NodeId
from .events import MAX_CREDIT, Have, Want

__all__ = ["MAX_RANGES", "CreditWindow", "Round"]

MAX_RANGES = 100_000
"""HAVE ranges per round (and, separately, WANT ranges per round) a connection accepts."""


def _feed(author: bytes) -> str:
    return f"{NodeId(author).short}…"


class Round:
    """One side's provider round as both ends track it: the offer (per feed,
    ascending, non-overlapping ranges), the change it covers, the wants in the
    order asked, and the position of the entry stream within them.

    >>> r = Round()
    >>> r.add_have(Have(author=bytes(32), from_seq=1, to_seq=9))
    >>> r.end_offer(7)
    >>> r.add_want(Want(author=bytes(32), from_seq=4, to_seq=5))
    >>> r.take_entry(bytes(32), 4); r.take_entry(bytes(32), 5); r.finish(7)
    """

    def __init__(self, max_ranges: int = MAX_RANGES) -> None:
        self.max_ranges = max_ranges
        self.last_change = -1  # HAVE_END change of the previous round this session
        self._reset()

    def _reset(self) -> None:
        self._offer: dict[bytes, list[tuple[int, int]]] = {}
        self.offered = 0
        self.change: int | None = None
        self._wants: deque[Want] = deque()
        self._last_wanted: dict[bytes, int] = {}
        self.wanted = 0
        self._next_seq = 0  # within _wants[0]: the lowest seq an ENTRY may still have

    @property
    def wants(self) -> tuple[Want, ...]:
        """The wanted ranges not yet passed by the entry stream, in order."""
        return tuple(self._wants)

    def add_have(self, have: Have) -> None:
        if self.offered >= self.max_ranges:
            raise LocalProtocolError(f"more than {self.max_ranges} HAVE ranges in one round")
        ranges = self._offer.get(have.author)
        if ranges and have.from_seq <= ranges[-1][1]:
            raise LocalProtocolError(
                f"HAVE {_feed(have.author)} {have.from_seq}..{have.to_seq} overlaps or precedes "
                f"an earlier HAVE of that feed (ranges of a feed must ascend)"
            )
        if ranges and have.from_seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], have.to_seq)  # touching ranges merge
        elif ranges:
            ranges.append((have.from_seq, have.to_seq))
        else:
            self._offer[have.author] = [(have.from_seq, have.to_seq)]
        self.offered += 1

    def end_offer(self, change: int) -> None:
        if change < self.last_change:
            raise LocalProtocolError(
                f"HAVE_END change {change} is below the previous round's {self.last_change} "
                "(a change counter never goes back within a session)"
            )
        self.change = change

    def add_want(self, want: Want) -> None:
        if self.wanted >= self.max_ranges:
            raise LocalProtocolError(f"more than {self.max_ranges} WANT ranges in one round")
        ranges = self._offer.get(want.author, [])
        i = bisect.bisect_right(ranges, (want.from_seq, 2**64)) - 1
        if i < 0 or want.to_seq > ranges[i][1]:
            raise LocalProtocolError(
                f"WANT {_feed(want.author)} {want.from_seq}..{want.to_seq} was not offered"
            )
        if want.from_seq <= self._last_wanted.get(want.author, 0):
            raise LocalProtocolError(
                f"WANT {_feed(want.author)} {want.from_seq}..{want.to_seq} overlaps or "
                "precedes an earlier WANT of that feed (ranges of a feed must ascend)"
            )
        self._last_wanted[want.author] = want.to_seq
        if not self._wants:
            self._next_seq = want.from_seq
        self._wants.append(want)
        self.wanted += 1

    def take_entry(self, author: bytes, seq: int) -> None:
        """An ENTRY for ``(author, seq)``: it must be the wanted ranges' next or a later
        seq, in WANT order (entries a provider lacks are skipped, never reordered)."""
        wants = self._wants
        for index, want in enumerate(wants):
            low = self._next_seq if index == 0 else want.from_seq
            if want.author == author and low <= seq <= want.to_seq:
                break
        else:
            raise LocalProtocolError(
                f"ENTRY not wanted: {_feed(author)}/{seq} is not in a wanted range still open "
                "(never wanted, sent twice, or out of WANT order)"
            )
        for _ in range(index):
            wants.popleft()
        if seq == want.to_seq:
            wants.popleft()
            self._next_seq = wants[0].from_seq if wants else 0
        else:
            self._next_seq = seq + 1

    def finish(self, change: int) -> None:
        """DONE: the round is over; ``change`` must repeat the round's HAVE_END."""
        if change != self.change:
            raise LocalProtocolError(
                f"DONE change {change} differs from the round's HAVE_END change {self.change}"
            )
        self.last_change = change
        self._reset()

    def abandon(self) -> None:
        """BYE in the middle of a round: forget it (no checkpoint comes of it)."""
        self._reset()


class CreditWindow:
    """Credit one side holds for sending ENTRY messages: entries and bytes left.

    >>> w = CreditWindow()
    >>> w.grant(2, 500); w.allows(400)
    True
    >>> w.spend(400); w.allows(200)
    False
    """

    def __init__(self) -> None:
        self.entries = 0
        self.bytes = 0

    def grant(self, entries: int, nbytes: int) -> None:
        if self.entries + entries > MAX_CREDIT or self.bytes + nbytes > MAX_CREDIT:
            raise LocalProtocolError(
                f"CREDIT overflow: more than {MAX_CREDIT} entries or bytes of credit outstanding"
            )
        self.entries += entries
        self.bytes += nbytes

    def allows(self, size: int) -> bool:
        return self.entries >= 1 and self.bytes >= size

    def spend(self, size: int) -> None:
        if not self.allows(size):
            raise LocalProtocolError(
                f"ENTRY beyond credit: an entry of {size} bytes with {self.entries} entries / "
                f"{self.bytes} bytes of credit left"
            )
        self.entries -= 1
        self.bytes -= size

    def __repr__(self) -> str:
        return f"CreditWindow(entries={self.entries}, bytes={self.bytes})"
