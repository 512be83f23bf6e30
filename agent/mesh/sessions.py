"""The sessions a node has open now, one per connection, and the rules over them.

A node may hold several sessions with one peer: its live one, a one-shot
``lichen sync`` (which shares the node's identity with the node's running
agent), a reconnection whose predecessor has not timed out yet. Two *live*
ones are one too many: :meth:`SessionTable.duplicates` picks, on both ends
alike, which to end. Decisions only — the gossip runtime ends what they name.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..channel import Channel
from ..identity import NodeId
from .session import SyncSession

__all__ = ["DUPLICATE", "MAX_SESSIONS_PER_PEER", "REVOKED", "OpenSession", "SessionTable"]

#: sessions at once with one peer (a live one, one-shot syncs, a reconnection)
MAX_SESSIONS_PER_PEER = 3
#: why this node ended a session
DUPLICATE, REVOKED = "duplicate", "no longer trusted"


@dataclass(eq=False)
class OpenSession:
    """One session over one connection."""

    session: SyncSession
    channel: Channel
    peer: NodeId
    address: str
    initiator: bytes  # the key of the node that opened the connection
    outgoing: bool
    started_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    started: float = field(default_factory=time.monotonic)
    ended_by: str | None = None  # DUPLICATE, REVOKED

    @property
    def live(self) -> bool:
        """Both ends asked for LIVE: the session stays until one leaves."""
        return self.session.live and self.session.conn.peer_live

    def status(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "address": self.address,
            "direction": "out" if self.outgoing else "in",
            "live": self.live,
            "since_ms": self.started_ms,
            "entries_sent": self.session.report.entries_sent,
            "entries_received": self.session.report.entries_stored,
        }


class SessionTable:
    """The open sessions, by a number per connection."""

    def __init__(self) -> None:
        self._open: dict[int, OpenSession] = {}
        self._numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[OpenSession]:
        return iter(list(self._open.values()))

    def values(self) -> list[OpenSession]:
        return list(self._open.values())

    def add(self, opened: OpenSession) -> int:
        number = next(self._numbers)
        self._open[number] = opened
        return number

    def remove(self, number: int) -> None:
        del self._open[number]

    def with_peer(self, peer: NodeId) -> list[OpenSession]:
        return [s for s in self._open.values() if s.peer == peer]

    def full_for(self, peer: NodeId) -> bool:
        return len(self.with_peer(peer)) >= MAX_SESSIONS_PER_PEER

    def busy(self) -> set[str]:
        """Addresses and node ids with a session open (the planner dials neither)."""
        return {s.address for s in self._open.values()} | {str(s.peer) for s in self._open.values()}

    def duplicates(self) -> list[OpenSession]:
        """Of several live sessions with one peer, all but the connection opened by
        the smaller key (of two opened by the same node, all but the newer): both
        ends decide alike. Marked :data:`DUPLICATE`; the caller ends them."""
        live: dict[NodeId, list[OpenSession]] = {}
        for s in self._open.values():
            if s.ended_by is None and s.live:
                live.setdefault(s.peer, []).append(s)
        extra = []
        for sessions in live.values():
            keep = min(sessions, key=lambda s: (s.initiator, -s.started))
            extra += [s for s in sessions if s is not keep]
        for s in extra:
            s.ended_by = DUPLICATE
        return extra

    def untrusted(self, refusal: Callable[[NodeId], str | None]) -> list[OpenSession]:
        """Sessions whose peer ``refusal`` now refuses, marked :data:`REVOKED`."""
        revoked = [s for s in self._open.values() if s.ended_by is None and refusal(s.peer)]
        for s in revoked:
            s.ended_by = REVOKED
        return revoked

    def superseded(self, ended: OpenSession, ok: bool, protocol_error: bool) -> bool:
        """``ended`` (just removed) was a duplicate, or was cut while another
        session with the same peer carries on: not a failure."""
        return ended.ended_by == DUPLICATE or (
            not ok and not protocol_error and bool(self.with_peer(ended.peer))
        )

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self._open.values()]
