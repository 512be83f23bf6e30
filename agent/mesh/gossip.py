"""The gossip runtime: transports, channels and sync sessions, as the planner says.

:class:`Gossip` is the asyncio shell around the pieces of this package. It
starts every transport instance (:mod:`.links`; one that fails to start is
retried with backoff), admits incoming handshakes (:mod:`.admission`), turns
sightings of trusted nodes into targets for the :mod:`.planner`, dials what it
says is due, opens the Noise channel (the trust policy decides who may
connect) and runs a :class:`~agent.mesh.session.SyncSession` per connection
(:mod:`.sessions`: one live session per peer). It keeps the peer book,
penalises a peer that broke the protocol, pokes live sessions whenever the
node's log grows (it listens to :attr:`agent.node.Node.changed`: our readings,
entries from any peer, acknowledgements an uplink stored), so new entries
travel at once, and ends the sessions of a peer whose trust was removed (or
that was revoked from the fleet). On a node in a fleet, :mod:`.fleet_link`
answers invite handshakes and restarts sessions after an approval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..aio import cancel_and_wait, wait_event
from ..channel import Channel, ChannelRejected, open_channel
from ..channel.stream import DEFAULT_HANDSHAKE_TIMEOUT
from ..config import MeshConfig
from ..errors import ChannelError, LichenError, TransportError
from ..identity import NodeId
from ..link_api import PeerSighting, Stream, Transport
from ..logs import event
from ..sync import ALLOW_ALL, AccessPolicy
from .admission import HandshakeAdmission, Quiet, Ticket
from .fleet_link import RESTARTED, RESTARTS, FleetLink
from .links import GossipContext, TransportLink, dialer_for, heads_digest
from .peerbook import PeerBook
from .planner import GossipPlanner
from .report import SessionReport, record_outcome
from .session import SessionLog, SyncSession
from .sessions import REVOKED, OpenSession, SessionTable
from .trust import Strangers, TrustPolicy

if TYPE_CHECKING:
    from ..node import LogChange, Node

__all__ = ["Gossip", "GossipContext", "heads_digest"]

log = logging.getLogger("lichen.mesh")

DIAL_TICK_S = 1.0
BOOK_FLUSH_S = 10.0
#: seconds between looks at the trust store (a removed peer's sessions end)
TRUST_CHECK_S = 1.0
#: at most one summary of refused connections per this many seconds
REFUSALS_EVERY_S = 10.0


class Gossip:
    """Sync with peers over ``transports`` until :meth:`close`; ``node`` is
    started (its reader open) before :meth:`start`."""

    def __init__(
        self,
        node: Node,
        links: Sequence[TransportLink | Transport],
        *,
        config: MeshConfig,
        trust: TrustPolicy,
        peer_book: PeerBook,
        role: str = "board",
        static_peers: Sequence[str] = (),
        policy: AccessPolicy = ALLOW_ALL,
        fleet: FleetLink | None = None,
    ) -> None:
        self.node, self.identity = node, node.identity
        self.fleet = fleet  # a node in a fleet: invite handshakes, approvals
        self.me: NodeId = node.identity.node_id
        self.policy = policy  # who may read and write what, in every session
        self.links = [
            link if isinstance(link, TransportLink) else TransportLink.wrap(link) for link in links
        ]
        self.config, self.trust, self.book, self.role = config, trust, peer_book, role
        self.planner = GossipPlanner.for_config(config, own_node=str(self.me))
        self.planner.on_sighting = frozenset(
            link.scheme for link in self.links if link.cls.dial_on_sighting
        )
        for address in static_peers:
            self.planner.add_static(address)
        self.sessions = SessionTable()
        self.completed = 0
        self.failed = 0
        self.last_sync_ms: int | None = None
        self._dialling: set[str] = set()
        self._strangers = Strangers()
        self.admission = HandshakeAdmission.for_config(config)
        self._quiet = Quiet()  # a failed handshake: INFO once a minute per host
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._unsubscribe: Callable[[], None] | None = None

    # ------------------------------------------------------------- running

    async def start(self) -> None:
        """Start the transports (one attempt each; those that fail are retried
        in the background) and the loops."""
        self._unsubscribe = self.node.changed.subscribe(self._log_changed)
        for link in self.links:
            if await link.start():
                await self._running(link)
            else:
                self._spawn(link.keep_starting(self._running), f"start {link.name}")
        self._spawn(self._dial_loop(), "dial")
        self._spawn(self._book_loop(), "peer book")
        self._spawn(self._trust_loop(), "trust")
        running = [link.name for link in self.links if link.running]
        event(log, "gossip started", transports=",".join(running) or "none")

    async def _running(self, link: TransportLink) -> None:
        assert link.transport is not None
        self._spawn(self._accept_loop(link), f"accept {link.name}")
        self._spawn(self._sighting_loop(link), f"sightings {link.name}")
        self._wake.set()

    async def close(self) -> None:
        """Say BYE to every peer (briefly), stop the transports, save the peer book."""
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        for active in list(self.sessions.values()):
            active.session.close("node stopping")
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    while self.sessions:
                        await asyncio.sleep(0.05)
        await cancel_and_wait(self._tasks)
        for link in self.links:
            await link.close()
        self.book.flush()

    def _log_changed(self, _change: LogChange) -> None:
        self.poke()

    def poke(self) -> None:
        """Our log grew: live sessions offer the new entries; adverts follow."""
        for active in self.sessions.values():
            active.session.poke()
        for link in self.links:
            if link.transport is not None:
                link.transport.heads_changed()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _book_loop(self) -> None:
        while True:
            await asyncio.sleep(BOOK_FLUSH_S)
            self.book.flush()

    async def _accept_loop(self, link: TransportLink) -> None:
        transport = link.transport
        assert transport is not None
        while True:
            wait = self.admission.accept_wait(time.monotonic())
            if wait > 0:  # over the accept rate: leave callers to the transport's queue
                await asyncio.sleep(wait)
                continue
            try:
                stream = await transport.accept()
            except NotImplementedError:
                return
            except TransportError as exc:
                if self._closed:
                    return
                event(log, "accept failed", logging.WARNING, transport=link.name, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            await self._admit(link, stream)

    async def _admit(self, link: TransportLink, stream: Stream) -> None:
        """Start the handshake of an incoming stream if admission allows it (see
        :mod:`agent.mesh.admission`); otherwise close it at once."""
        try:
            host = link.parse(stream.peer).host
        except ValueError:
            host = stream.peer
        now = time.monotonic()
        ticket, evicted = self.admission.admit(host, now)
        if evicted is not None and evicted.handle is not None:
            self._spawn(evicted.handle.close(), "evict a handshake")
        if ticket is None:
            with contextlib.suppress(Exception):
                await stream.close()
            if refused := self.admission.refusals_to_tell(now, REFUSALS_EVERY_S):
                event(log, "incoming connections refused (too many handshakes)", logging.WARNING,
                      refused=refused, **self.admission.status())  # fmt: skip
            return
        ticket.handle = stream
        self._spawn(self._serve(stream, outgoing=False, ticket=ticket), f"serve {stream.peer}")

    async def _sighting_loop(self, link: TransportLink) -> None:
        assert link.transport is not None
        async with contextlib.aclosing(link.transport.sightings()) as sightings:  # type: ignore[type-var]
            async for seen in sightings:
                self._sighted(seen)

    def _sighted(self, seen: PeerSighting) -> None:
        """A sighting becomes a target — unless it names a node this one does not
        trust: that one is neither dialled nor put in the peer book (a LAN full
        of strangers costs nothing), only remembered in case it becomes trusted."""
        if seen.node_id is None:
            self.planner.add_static(seen.address)
        else:
            if seen.node_id == str(self.me) or not self._strangers.admit(seen, self.trust):
                return
            self.book.seen(seen.node_id, seen.address, seen.heads_digest)
            self.planner.sighting(seen.address, seen.node_id, seen.heads_digest, time.monotonic())
        self._wake.set()

    async def _trust_loop(self) -> None:
        while True:
            await asyncio.sleep(TRUST_CHECK_S)
            try:
                changed = self.trust.reload()
            except LichenError as exc:
                event(log, "trust store unreadable; the last one read stays", logging.WARNING,
                      error=str(exc))  # fmt: skip
                continue
            if changed:
                self.trust_changed()
                if self.fleet is not None:
                    await self.fleet.approvals(self.sessions)

    def trust_changed(self) -> None:
        """The trust store or the fleet document changed: end every session with
        a peer no longer trusted (its link is cut at once: a revoked peer gets
        nothing more, not even the rest of a round), and dial strangers that
        are trusted now."""
        for revoked in self.sessions.untrusted(self.trust.decide):
            event(log, "ending session: peer no longer trusted", logging.WARNING,
                  peer=str(revoked.peer), address=revoked.address)  # fmt: skip
            self._spawn(revoked.channel.stream.close(), f"revoke {revoked.peer}")
        for seen in self._strangers.trusted_now(self.trust):
            self._sighted(seen)

    async def _dial_loop(self) -> None:
        while True:
            await wait_event(self._wake, DIAL_TICK_S)
            self._wake.clear()
            for duplicate in self.sessions.duplicates():
                duplicate.session.close("duplicate connection")
            active = self.sessions.busy() | self._dialling
            now_ms = time.time_ns() // 1_000_000
            penalty = {r.node: r.current_penalty(now_ms) for r in self.book.all() if r.penalty}
            for address in self.planner.due(time.monotonic(), active, penalty):
                link = dialer_for(self.links, address)
                if link is None or link.transport is None:
                    self.planner.outcome(address, time.monotonic(), ok=False)
                    continue
                self._dialling.add(address)
                self._spawn(self._dial(link, address), f"dial {address}")

    async def _dial(self, link: TransportLink, address: str) -> None:
        try:
            transport = link.transport
            if transport is None:
                return
            try:
                stream = await transport.connect(address)
            except TransportError as exc:
                self.planner.outcome(address, time.monotonic(), ok=False)
                event(log, "dial failed", logging.DEBUG, address=address, error=str(exc))
                return
            await self._serve(stream, outgoing=True, address=address)
        finally:
            self._dialling.discard(address)

    # ------------------------------------------------------------ sessions

    async def _serve(
        self,
        stream: Stream,
        *,
        outgoing: bool,
        address: str | None = None,
        ticket: Ticket | None = None,
    ) -> None:
        address = address or stream.peer
        options: dict[str, Any] = {}
        if not outgoing and self.fleet is not None:  # a node joining with an invite?
            limit = self.config.handshake_timeout if ticket else DEFAULT_HANDSHAKE_TIMEOUT
            options = await self.fleet.look(stream, limit)
            if "psk" in options:
                joiner = await self._handshake(stream, False, address, ticket, **options)
                await self.fleet.serve_join(joiner)
                return
        channel = await self._handshake(stream, outgoing, address, ticket, **options)
        if channel is None:
            return
        peer = channel.peer
        if self._closed or self.sessions.full_for(peer):
            await channel.close()
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=True, node=str(peer))
            why = "node stopping" if self._closed else "enough sessions with this peer"
            event(log, "session not opened", peer=str(peer), address=address, reason=why)
            return
        session = SyncSession(
            channel,
            SessionLog(self.node.reader, self.node.writer),
            self.me,
            role=self.role,
            live=self.config.live,
            policy=self.policy,
            stall_timeout=self.config.stall_timeout,
        )
        initiator = self.me.key if outgoing else peer.key
        active = OpenSession(session, channel, peer, address, initiator, outgoing)
        number = self.sessions.add(active)
        self.book.seen(str(peer), address if outgoing else None)
        event(log, "session open", peer=str(peer), address=address, sas=channel.sas)
        try:
            report = await session.run()
        finally:
            self.sessions.remove(number)
        self._ended(active, report)

    async def _handshake(
        self, stream: Stream, outgoing: bool, address: str, ticket: Ticket | None, **options: Any
    ) -> Channel | None:
        """The Noise handshake (an incoming one under its admission ``ticket``, within
        ``handshake_timeout``); None if it failed or the peer was refused.
        ``options`` for :func:`open_channel` (an invite's: see :mod:`.fleet_link`)."""
        channel = None
        options.setdefault("trust", self.trust.decide)
        try:
            channel = await open_channel(
                stream, self.identity, initiator=outgoing,
                timeout=self.config.handshake_timeout if ticket else DEFAULT_HANDSHAKE_TIMEOUT,
                **options,
            )  # fmt: skip
        except ChannelRejected as exc:
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=False)
            event(log, "peer refused", self._level(ticket), address=address, reason=exc.reason)
        except ChannelError as exc:
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=False)
            event(log, "handshake failed", self._level(ticket), address=address, error=str(exc))
        finally:
            if ticket is not None:
                self.admission.release(ticket, trusted=channel is not None)
        return channel

    def _level(self, ticket: Ticket | None) -> int:
        """Our own dials: INFO; incoming: INFO for a host's first in a minute."""
        quiet = ticket is not None and not self._quiet.first(ticket.host, time.monotonic())
        return logging.DEBUG if quiet else logging.INFO

    def _ended(self, active: OpenSession, report: SessionReport) -> None:
        """Record how a session went: peer book, planner, counters, one log line."""
        superseded = self.sessions.superseded(active, report.ok, report.protocol_error)
        revoked = active.ended_by == REVOKED
        ok = record_outcome(report, self.book, self.planner, node=str(active.peer),
                            dialled=active.address if active.outgoing else None,
                            superseded=superseded, revoked=revoked)  # fmt: skip
        if active.outgoing and ok and (active.ended_by == RESTARTED or report.peer_bye in RESTARTS):
            self.planner.targets[active.address].next_attempt = time.monotonic()  # from change 0
            self._wake.set()
        self.completed += ok
        self.failed += not ok and not revoked
        self.last_sync_ms = time.time_ns() // 1_000_000

    def status(self) -> dict[str, Any]:
        """The ``sync`` part of the agent's status snapshot."""
        return {
            "transports": [link.status() for link in self.links],
            "sessions": self.sessions.status(),
            "targets": len(self.planner.targets),
            "peers_known": len(self.book),
            "admission": self.admission.status(),
            "sessions_completed": self.completed,
            "sessions_failed": self.failed,
            "last_sync_ms": self.last_sync_ms,
            **({"fleet": self.fleet.status()} if self.fleet is not None else {}),
        }
