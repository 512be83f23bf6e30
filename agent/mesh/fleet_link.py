"""The gossip runtime's part in the fleet: invite handshakes, approvals, status.

:class:`FleetLink` is what :class:`~agent.mesh.gossip.Gossip` does for a
node in a fleet (:mod:`agent.fleet`), kept apart from the gossip itself:

* it tells an invite handshake from a plain one by the first two bytes of an
  incoming stream (the length of message 1: 48 with a pre-shared key, 32
  without) and hands invite handshakes to the fleet's
  :class:`~agent.fleet.join.JoinService`, with the trust decision for
  joiners (anyone holding a code, but this node and revoked nodes);
* after the fleet document changed, it finds the members approved since the
  last look: what was refused from them must be asked for again, so every
  checkpoint is forgotten and the sessions concerned end with the BYE reason
  :data:`RESTART` (on which the side that dialled dials again at once);
* likewise when the rules or an approved member's groups changed: what was
  withheld from this node or refused by it may be allowed now, so every
  checkpoint is forgotten and every session ends, with :data:`RESTART_RULES`;
* it adds the fleet to the gossip's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import TransportError
from ..fleet import FleetView, InviteBook, format_fleet_id, read_fleet_file
from ..fleet.join import PSK_FIRST_FRAME, JoinService
from ..identity import NodeId
from ..link_api import Stream
from ..logs import event
from .sessions import OpenSession, SessionTable

if TYPE_CHECKING:
    from ..channel import Channel
    from ..home import Home
    from ..node import Node

__all__ = ["RESTART", "RESTARTED", "RESTARTS", "RESTART_RULES", "FleetLink", "fleet_link"]

log = logging.getLogger("lichen.mesh")

#: the BYE reason of a session ended so that both sides sync again from change 0
RESTART = "approved in the fleet: syncing again from the start"
#: the same after the fleet's rules or an approved member's groups changed
RESTART_RULES = "rules or groups changed in the fleet: syncing again from the start"
#: BYE reasons on which the side that dialled dials again at once
RESTARTS = (RESTART, RESTART_RULES)
#: :attr:`OpenSession.ended_by` of such a session
RESTARTED = "restart"


class FleetLink:
    """The fleet's hooks in the gossip of ``node`` (its ``view`` and ``joins``)."""

    def __init__(self, node: Node, view: FleetView, joins: JoinService | None) -> None:
        self.node, self.view, self.joins = node, view, joins
        self.me = node.identity.node_id
        self._approved = self._approved_now()
        self._grants = self._grants_now()

    async def first_bytes(self, stream: Stream, limit: float) -> bytes:
        """The first two bytes of an incoming stream, within ``limit`` seconds;
        what arrived if the link ended or the time ran out (the handshake then
        fails on its own)."""
        received = b""
        with contextlib.suppress(TimeoutError, TransportError):
            async with asyncio.timeout(limit):
                while len(received) < 2:
                    more = await stream.receive(2 - len(received))
                    if not more:
                        break
                    received += more
        return received

    async def look(self, stream: Stream, limit: float) -> dict[str, Any]:
        """Read the first two bytes of an incoming stream: the options of its
        :func:`~agent.channel.open_channel` — with ``psk`` (the keys of the
        invites kept) and :meth:`join_trust` if it is an invite handshake."""
        first = await self.first_bytes(stream, limit)
        if self.joins is None or first != PSK_FIRST_FRAME:
            return {"received": first}
        return {"received": first, "psk": self.joins.keys(), "trust": self.join_trust}

    async def serve_join(self, channel: Channel | None) -> None:
        """Answer a joiner whose invite handshake succeeded (None: it failed)."""
        if channel is not None and self.joins is not None:
            await self.joins.serve(channel)

    def join_trust(self, peer: NodeId) -> str | None:
        """Who may join with an invite: anyone holding its code, but this node
        itself and a node revoked from the fleet."""
        if peer == self.me:
            return "it is this node itself"
        if self.view.membership.is_revoked(peer.key):
            return self.view.decide(peer)
        return None

    def _approved_now(self) -> set[bytes]:
        members = self.view.membership.members
        return {k for k, m in members.items() if m.approved and not m.revoked}

    def _grants_now(self) -> tuple[object, ...]:
        """The rules and the approved members' groups: what may_read and may_write
        of a ruled collection depend on besides approval."""
        membership = self.view.membership
        groups = sorted((k, m.groups) for k, m in membership.members.items() if m.approved)
        rules = sorted((r.pattern, r.write, r.read, r.carry) for r in membership.rules.values())
        return (tuple(groups), tuple(rules))

    async def approvals(self, sessions: SessionTable) -> list[OpenSession]:
        """After the fleet document changed: if members were approved since the
        last look, forget every checkpoint and end (with :data:`RESTART`) the
        sessions with them — all sessions, if this node is one of them; if the
        rules or an approved member's groups changed, forget every checkpoint
        and end every session (with :data:`RESTART_RULES`). Returns the sessions
        ended."""
        now, grants = self._approved_now(), self._grants_now()
        newly, self._approved = now - self._approved, now
        regranted, self._grants = grants != self._grants, grants
        if not newly and not regranted:
            return []
        reason, what = RESTART, "fleet approval"
        if regranted:  # anything withheld or refused may be allowed now, whoever held it
            reason, what = RESTART_RULES, "fleet rules or groups changed"

        def concerned() -> list[OpenSession]:
            if regranted or self.me.key in newly:
                return list(sessions.values())
            return [s for key in newly for s in sessions.with_peer(NodeId(key))]

        # a round of theirs ending now must not write its checkpoint back after
        # the forget (the next session would then skip what was refused): they
        # stop saving first; the writer keeps the order of what was queued
        for active in concerned():
            active.session.keeps_checkpoints = False
        await self.node.writer.forget_checkpoint(None)
        restart = concerned()  # with any that opened meanwhile
        for active in restart:
            active.session.keeps_checkpoints = False
            event(log, f"{what}: syncing again from the start", peer=str(active.peer))
            active.ended_by = RESTARTED
            active.session.close(reason)
        return restart

    def status(self) -> dict[str, Any]:
        """The ``fleet`` part of the gossip's status."""
        members = self.view.membership.members.values()
        return {
            "id": format_fleet_id(self.view.fleet),
            "members": sum(1 for m in members if not m.revoked),
            "pending": sum(1 for m in members if not m.approved and not m.revoked),
            "revoked": sum(1 for m in members if m.revoked),
            "ignored": len(self.view.membership.ignored),
            "joined": self.joins.joined if self.joins else 0,
            "joins_refused": self.joins.refused if self.joins else 0,
        }


def fleet_link(home: Home, node: Node) -> FleetLink | None:
    """The fleet hooks of a started ``node`` whose home names a fleet (else None)."""
    fleet = read_fleet_file(home.fleet_file)
    if fleet is None:
        return None
    view = FleetView(node.reader, fleet)
    return FleetLink(node, view, JoinService(node, view, InviteBook(home.invites_file)))
