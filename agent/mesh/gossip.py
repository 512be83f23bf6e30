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

One session per peer: when two nodes dial each other at the same moment, the
connection opened by the node with the smaller key wins on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..channel import ChannelRejected, open_channel
from ..config import MeshConfig, parse_budget
from ..errors import ChannelError, TransportError
from ..identity import Identity, NodeId
from ..link_api import Stream, Transport
from ..runtime.logs import event
from ..store.log_store import LogStore
from ..store.writer import LogWriter
from .links import TransportLink, dialer_for
from .peerbook import PeerBook
from .planner import GossipPlanner, TransportBudget
from .session import SessionLog, SyncSession
from .trust import TrustPolicy, TrustStore

if TYPE_CHECKING:
    from ..config import Config
    from ..home import Home
    from ..plugins import ConfiguredPlugin

__all__ = ["Gossip", "GossipContext", "gossip_for", "heads_digest"]

log = logging.getLogger("lichen.mesh")

DIAL_TICK_S = 1.0
BOOK_FLUSH_S = 10.0


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
    address: str
    initiator: bytes  # the key of the node that opened the connection
    outgoing: bool
    started_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)


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
        self.sessions: dict[bytes, _Active] = {}
        self.completed = 0
        self.failed = 0
        self.last_sync_ms: int | None = None
        self._dialling: set[str] = set()
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
                if seen.node_id is None:
                    self.planner.add_static(seen.address)
                else:
                    if seen.node_id == str(self.me):
                        continue
                    self.book.seen(seen.node_id, seen.address, seen.heads_digest)
                    self.planner.sighting(
                        seen.address, seen.node_id, seen.heads_digest, time.monotonic()
                    )
                self._wake.set()

    async def _dial_loop(self) -> None:
        while True:
            await wait_event(self._wake, DIAL_TICK_S)
            self._wake.clear()
            active = {a.address for a in self.sessions.values()} | self._dialling
            active |= {str(NodeId(key)) for key in self.sessions}
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
            event(log, "peer refused", logging.WARNING, address=address, reason=exc.reason)
            return
        except ChannelError as exc:
            if outgoing:
                self.planner.outcome(address, time.monotonic(), ok=False)
            event(log, "handshake failed", logging.INFO, address=address, error=str(exc))
            return
        peer = channel.peer
        initiator = self.me.key if outgoing else peer.key
        existing = self.sessions.get(peer.key)
        if existing is not None:
            if existing.initiator <= initiator or self._closed:  # the older one wins the tie
                await channel.close()
                if outgoing:
                    self.planner.outcome(address, time.monotonic(), ok=True, node=str(peer))
                return
            existing.session.close("duplicate connection")
        session = SyncSession(
            channel,
            SessionLog(self.reader, self.writer),
            self.me,
            role=self.role,
            live=self.config.live,
            stall_timeout=self.config.stall_timeout,
            on_stored=lambda _n: self.poke(),
        )
        active = _Active(session, address, initiator, outgoing)
        self.sessions[peer.key] = active
        self.book.seen(str(peer), address if outgoing else None)
        event(log, "session open", peer=str(peer), address=address, sas=channel.sas)
        try:
            report = await session.run()
        finally:
            if self.sessions.get(peer.key) is active:
                del self.sessions[peer.key]
        ok = report.ok
        node = str(peer)
        record = self.book.get(node)
        digest = record.heads_digest if record else None
        self.book.synced(
            node,
            ok=ok,
            sent=report.entries_sent,
            received=report.entries_stored,
            error=report.error or report.peer_error,
            digest=digest,
        )
        if report.protocol_error:
            self.book.penalise(node, report.error or "protocol error")
        if outgoing:
            wire = report.sync_bytes_sent + report.sync_bytes_received
            self.planner.outcome(
                address, time.monotonic(), ok=ok, node=node, digest=digest, wire_bytes=wire
            )
        self.completed += ok
        self.failed += not ok
        self.last_sync_ms = time.time_ns() // 1_000_000
        level = logging.INFO if ok else logging.WARNING
        event(
            log,
            "session closed",
            level,
            peer=node,
            sent=report.entries_sent,
            stored=report.entries_stored,
            seconds=round(report.seconds, 2),
            error=report.error or report.peer_error,
        )

    def status(self) -> dict[str, Any]:
        """The ``sync`` part of the agent's status snapshot."""
        return {
            "transports": [link.status() for link in self.links],
            "sessions": [
                {
                    "peer": str(NodeId(key)),
                    "address": a.address,
                    "direction": "out" if a.outgoing else "in",
                    "since_ms": a.started_ms,
                    "entries_sent": a.session.report.entries_sent,
                    "entries_received": a.session.report.entries_stored,
                }
                for key, a in self.sessions.items()
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
