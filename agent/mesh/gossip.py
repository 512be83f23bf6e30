"""The gossip runtime: transports, channels and sync sessions, as the planner says.

:class:`Gossip` is the asyncio shell around the pieces of this package. It
starts every configured transport instance (a :class:`~agent.mesh.links.TransportLink`
each; one that fails to start is retried with backoff), accepts incoming streams, turns sightings
into targets for the :class:`~agent.mesh.planner.GossipPlanner`, dials what
it says is due, opens the Noise channel (the trust policy decides who may
connect; a refusal is logged with its reason) and runs one
:class:`~agent.mesh.session.SyncSession` per peer. It keeps the peer book,
penalises a peer that broke the protocol, and pokes live sessions when the log
grows, so new entries travel at once.

Sessions are per connection. Two *live* sessions with one peer are one too
many: when two nodes dial each other at the same moment, both keep the
connection opened by the node with the smaller key (of two opened by the same
node, the newer) and end the other cleanly with BYE, once each side knows that
both ends of both asked for LIVE. A one-shot sync (``lichen sync``, not live)
never displaces a live session and is never displaced by one, so it works
while the node's own agent keeps its session with the same peer. A session
that ends while another one with the same peer carries on is superseded, not
failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..channel import Channel, ChannelRejected, open_channel
from ..config import MeshConfig, parse_budget
from ..errors import ChannelError, LichenError, TransportError
from ..identity import Identity, NodeId
from ..link_api import PeerSighting, Stream, Transport
from ..runtime.logs import event
from ..store.log_store import LogStore
from ..store.writer import LogWriter
from .links import TransportLink, dialer_for
from .peerbook import PeerBook
from .planner import GossipPlanner, TransportBudget
from .session import SessionLog, SessionReport, SyncSession
from .trust import TrustPolicy, TrustStore

if TYPE_CHECKING:
    from ..config import Config
    from ..home import Home
    from ..plugins import ConfiguredPlugin

__all__ = ["Gossip", "GossipContext", "gossip_for", "heads_digest"]

log = logging.getLogger("lichen.mesh")

DIAL_TICK_S = 1.0
BOOK_FLUSH_S = 10.0
#: sessions at once with one peer (a live one, one-shot syncs, a reconnection)
MAX_SESSIONS_PER_PEER = 3
#: seconds between looks at the trust store (a removed peer's sessions end)
TRUST_CHECK_S = 1.0
#: untrusted nodes seen on the LAN, remembered (newest) in case they become trusted
STRANGERS_KEPT = 256


def heads_digest(store: LogStore) -> str:
    """A short digest of every feed's head: equal digests, nothing new to fetch."""
    digest = hashlib.blake2b(digest_size=8)
    for head in store.heads():
        digest.update(head.author + head.seq.to_bytes(8, "big"))
    return digest.hexdigest()


@dataclass
class GossipContext:
    """The :class:`~agent.link_api.TransportContext` a transport gets."""

    name: str
    log: logging.Logger
    node: NodeId
    digest: Callable[[], str]

    @property
    def node_id(self) -> str:
        return str(self.node)

    def heads_digest(self) -> str:
        return self.digest()


@dataclass
class _Active:
    session: SyncSession
    channel: Channel
    peer: NodeId
    address: str
    initiator: bytes  # the key of the node that opened the connection
    outgoing: bool
    started_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    started: float = field(default_factory=time.monotonic)
    ended_by: str | None = None  # why this node ended it: "duplicate", "no longer trusted"

    @property
    def live(self) -> bool:
        """Both ends asked for LIVE: the session stays until one leaves."""
        return self.session.live and self.session.conn.peer_live


class Gossip:
    """Sync with peers over ``transports`` until :meth:`close`."""

    def __init__(
        self,
        identity: Identity,
        writer: LogWriter,
        reader: LogStore,
        links: Sequence[TransportLink | Transport],
        *,
        config: MeshConfig,
        trust: TrustPolicy,
        peer_book: PeerBook,
        role: str = "board",
        static_peers: Sequence[str] = (),
    ) -> None:
        self.identity, self.me = identity, identity.node_id
        self.writer, self.reader = writer, reader
        self.links = [
            link if isinstance(link, TransportLink) else TransportLink.wrap(link) for link in links
        ]
        self.config, self.trust, self.book, self.role = config, trust, peer_book, role
        budgets = {}
        for scheme, text in config.budgets.items():
            sessions, per_hour = parse_budget(scheme, text)
            budgets[scheme] = TransportBudget(sessions, per_hour)
        self.planner = GossipPlanner(
            sync_interval=config.sync_interval,
            max_sessions=config.max_sessions,
            budgets=budgets,
            own_node=str(self.me),
        )
        for address in static_peers:
            self.planner.add_static(address)
        self.sessions: dict[int, _Active] = {}  # by a number per connection
        self._session_ids = itertools.count(1)
        self.completed = 0
        self.failed = 0
        self.last_sync_ms: int | None = None
        self._dialling: set[str] = set()
        self._strangers: OrderedDict[str, PeerSighting] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._closed = False

    # ------------------------------------------------------------- running

    async def start(self) -> None:
        """Start the transports (one attempt each; those that fail are retried
        in the background) and the loops."""
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
        for active in list(self.sessions.values()):
            active.session.close("node stopping")
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    while self.sessions:
                        await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self.links:
            await link.close()
        self.book.flush()

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
            self._spawn(self._serve(stream, outgoing=False), f"serve {stream.peer}")

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
            if seen.node_id == str(self.me):
                return
            try:
                node = NodeId.parse(seen.node_id)
            except ValueError:
                return
            if self.trust.decide(node) is not None:
                if seen.node_id not in self._strangers:
                    event(log, "untrusted node seen; not dialled", logging.DEBUG,
                          node=seen.node_id, address=seen.address)  # fmt: skip
                self._strangers[seen.node_id] = seen
                self._strangers.move_to_end(seen.node_id)
                while len(self._strangers) > STRANGERS_KEPT:
                    self._strangers.popitem(last=False)
                return
            self._strangers.pop(seen.node_id, None)
            self.book.seen(seen.node_id, seen.address, seen.heads_digest)
            self.planner.sighting(seen.address, seen.node_id, seen.heads_digest, time.monotonic())
        self._wake.set()

    async def _trust_loop(self) -> None:
        while True:
            await asyncio.sleep(TRUST_CHECK_S)
            try:
                changed = self.trust.store.reload()
            except LichenError as exc:
                event(log, "trust store unreadable; the last one read stays", logging.WARNING,
                      error=str(exc))  # fmt: skip
                continue
            if changed:
                self.trust_changed()

    def trust_changed(self) -> None:
        """The trust store changed: end every session with a peer no longer
        trusted (its link is cut at once: a revoked peer gets nothing more, not
        even the rest of a round), and dial strangers that are trusted now."""
        for active in list(self.sessions.values()):
            if active.ended_by is None and self.trust.decide(active.peer) is not None:
                active.ended_by = "no longer trusted"
                event(log, "ending session: peer no longer trusted", logging.WARNING,
                      peer=str(active.peer), address=active.address)  # fmt: skip
                self._spawn(active.channel.stream.close(), f"revoke {active.peer}")
        for seen in list(self._strangers.values()):
            assert seen.node_id is not None
            if self.trust.decide(NodeId.parse(seen.node_id)) is None:
                self._sighted(seen)

    async def _dial_loop(self) -> None:
        while True:
            await wait_event(self._wake, DIAL_TICK_S)
            self._wake.clear()
            self._end_duplicates()
            active = {a.address for a in self.sessions.values()} | self._dialling
            active |= {str(a.peer) for a in self.sessions.values()}
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

    async def _serve(self, stream: Stream, *, outgoing: bool, address: str | None = None) -> None:
        address = address or stream.peer
        try:
            channel = await open_channel(
                stream, self.identity, initiator=outgoing, trust=self.trust.decide
            )
        except ChannelRejected as exc:
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=False)
            event(log, "peer refused", logging.INFO, address=address, reason=exc.reason)
            return
        except ChannelError as exc:
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=False)
            event(log, "handshake failed", logging.INFO, address=address, error=str(exc))
            return
        peer = channel.peer
        if self._closed or len(self._sessions_with(peer)) >= MAX_SESSIONS_PER_PEER:
            await channel.close()
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=True, node=str(peer))
            why = "node stopping" if self._closed else "enough sessions with this peer"
            event(log, "session not opened", peer=str(peer), address=address, reason=why)
            return
        session = SyncSession(
            channel,
            SessionLog(self.reader, self.writer),
            self.me,
            role=self.role,
            live=self.config.live,
            stall_timeout=self.config.stall_timeout,
            on_stored=lambda _n: self.poke(),
        )
        initiator = self.me.key if outgoing else peer.key
        active = _Active(session, channel, peer, address, initiator, outgoing)
        number = next(self._session_ids)
        self.sessions[number] = active
        self.book.seen(str(peer), address if outgoing else None)
        event(log, "session open", peer=str(peer), address=address, sas=channel.sas)
        try:
            report = await session.run()
        finally:
            del self.sessions[number]
        self._ended(active, report)

    def _sessions_with(self, peer: NodeId) -> list[_Active]:
        return [a for a in self.sessions.values() if a.peer == peer]

    def _end_duplicates(self) -> None:
        """Of several live sessions with one peer, keep the connection opened by
        the smaller key (of two opened by the same node, the newer): both ends
        decide alike, and the others end cleanly with BYE."""
        live: dict[NodeId, list[_Active]] = {}
        for a in self.sessions.values():
            if a.ended_by is None and a.live:
                live.setdefault(a.peer, []).append(a)
        for sessions in live.values():
            keep = min(sessions, key=lambda a: (a.initiator, -a.started))
            for a in sessions:
                if a is not keep:
                    a.ended_by = "duplicate"
                    a.session.close("duplicate connection")

    def _ended(self, active: _Active, report: SessionReport) -> None:
        """Record how a session went: peer book, planner, counters, one log line."""
        node = str(active.peer)
        # ended as a duplicate, or cut while another session with the peer carries on
        superseded = active.ended_by == "duplicate" or (
            not report.ok and not report.protocol_error and bool(self._sessions_with(active.peer))
        )
        revoked = active.ended_by == "no longer trusted"
        ok = (report.ok or superseded) and not revoked
        error = "ended: no longer trusted" if revoked else report.error or report.peer_error
        record = self.book.get(node)
        digest = record.heads_digest if record else None
        self.book.synced(node, ok=ok, sent=report.entries_sent, received=report.entries_stored,
                         error=error, digest=digest)  # fmt: skip
        if report.protocol_error:
            self.book.penalise(node, report.error or "protocol error")
        if active.outgoing:
            wire = report.sync_bytes_sent + report.sync_bytes_received
            self.planner.outcome(
                active.address, time.monotonic(), ok=ok, node=node, digest=digest, wire_bytes=wire
            )
        self.completed += ok
        self.failed += not ok and not revoked
        self.last_sync_ms = time.time_ns() // 1_000_000
        event(
            log,
            "session closed",
            logging.INFO if ok or revoked else logging.WARNING,
            peer=node,
            sent=report.entries_sent,
            stored=report.entries_stored,
            seconds=round(report.seconds, 2),
            error=None if superseded else error,
            superseded=superseded or None,
        )

    def status(self) -> dict[str, Any]:
        """The ``sync`` part of the agent's status snapshot."""
        return {
            "transports": [link.status() for link in self.links],
            "sessions": [
                {
                    "peer": str(a.peer),
                    "address": a.address,
                    "direction": "out" if a.outgoing else "in",
                    "live": a.live,
                    "since_ms": a.started_ms,
                    "entries_sent": a.session.report.entries_sent,
                    "entries_received": a.session.report.entries_stored,
                }
                for a in self.sessions.values()
            ],
            "targets": len(self.planner.targets),
            "peers_known": len(self.book),
            "sessions_completed": self.completed,
            "sessions_failed": self.failed,
            "last_sync_ms": self.last_sync_ms,
        }


def gossip_for(
    home: Home,
    config: Config,
    writer: LogWriter,
    reader: LogStore,
    links: Sequence[ConfiguredPlugin],
    *,
    static_peers: Sequence[str] = (),
) -> Gossip:
    """The gossip runtime of a running node over its transport instances."""
    me = writer.identity.node_id
    transports = [
        TransportLink.configured(
            link,
            GossipContext(
                link.name, logging.getLogger(f"lichen.transport.{link.name}"), me,
                lambda: heads_digest(reader),
            ),
        )
        for link in links
    ]  # fmt: skip
    mesh = config.mesh
    return Gossip(
        writer.identity,
        writer,
        reader,
        transports,
        config=mesh,
        trust=TrustPolicy(TrustStore(home.trust_file), accept_any=mesh.accept == "any", own=me),
        peer_book=PeerBook(home.peer_book),
        role=config.node.role,
        static_peers=static_peers,
    )
