"""Gossip runtimes in one process: real logs, the real channel and sessions, and
in-memory transports that dial each other by address (with a latency, so both
ends of a handshake see the order a real network gives)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.config import MeshConfig
from agent.errors import TransportError
from agent.link_api import PeerSighting, Stream, Transport, TransportConfig, TransportContext
from agent.mesh.gossip import Gossip, GossipContext, heads_digest
from agent.mesh.peerbook import PeerBook
from agent.mesh.trust import TrustPolicy, TrustStore
from agent.transport import LimitedLink

from .nodes import Node, open_node

__all__ = ["MemoryNet", "MeshNode", "NetTransport", "gossip_for_node", "mesh_nodes", "node_context"]


class MemoryNet:
    """The air between :class:`NetTransport` objects: ``mem://NAME`` addresses."""

    def __init__(self, link: LimitedLink | None = None) -> None:
        self.link = link or LimitedLink(mtu=65536, rate=1e9, latency=0.02, buffer=1 << 20)
        self.listeners: dict[str, NetTransport] = {}


class NetTransport(Transport):
    """A transport on a :class:`MemoryNet`, listening at ``address``."""

    scheme = "mem"

    def __init__(
        self, config: TransportConfig, context: TransportContext, *, net: MemoryNet, address: str
    ) -> None:
        super().__init__(config, context)
        self.net, self.address = net, address
        self.incoming: asyncio.Queue[Stream] = asyncio.Queue()
        self.seen: asyncio.Queue[PeerSighting] = asyncio.Queue()

    def sight(self, node: str | None, address: str, digest: str | None = "d0") -> None:
        """Report a peer as an advertisement would (``node`` as it claims)."""
        self.seen.put_nowait(PeerSighting(address, 0, node, digest))

    async def sightings(self) -> AsyncIterator[PeerSighting]:
        while True:
            yield await self.seen.get()

    async def start(self) -> None:
        self.net.listeners[self.address] = self

    async def accept(self) -> Stream:
        return await self.incoming.get()

    async def connect(self, address: str) -> Stream:
        target = self.net.listeners.get(address)
        if target is None:
            raise TransportError(f"nothing listens at {address}")
        ours, theirs = self.net.link.pair(names=(address, self.address))
        await target.incoming.put(theirs)
        return ours

    async def close(self) -> None:
        if self.net.listeners.get(self.address) is self:
            del self.net.listeners[self.address]


@dataclass
class MeshNode:
    node: Node
    gossip: Gossip
    address: str
    trust: TrustStore
    transport: NetTransport

    async def close(self) -> None:
        await self.gossip.close()
        await self.node.close()


def gossip_for_node(
    tmp_path: Path,
    i: int,
    node: Node,
    transport: Transport,
    trusted: list[Node],
    *,
    config: MeshConfig | None = None,
    static_peers: Sequence[str] = (),
) -> tuple[Gossip, TrustStore]:
    """Node ``i``'s gossip over ``transport``, trusting ``trusted`` (its files in
    ``tmp_path``, named by ``i``); not started."""
    me = node.identity.node_id
    trust = TrustStore(tmp_path / f"trust-{i}.json")
    for other in trusted:
        if other is not node:
            trust.add(str(other.identity.node_id))
    gossip = Gossip(
        node,
        [transport],
        config=config or MeshConfig(),
        trust=TrustPolicy(trust, own=me),
        peer_book=PeerBook(tmp_path / f"peers-{i}.json"),
        static_peers=static_peers,
    )
    return gossip, trust


def node_context(node: Node, name: str) -> GossipContext:
    """The context a transport of ``node`` gets: its id and its real heads digest."""
    return GossipContext(name, logging.getLogger(f"test.{name}"), node.identity.node_id,
                         lambda: heads_digest(node.reader))  # fmt: skip


async def mesh_nodes(
    tmp_path: Path,
    count: int,
    net: MemoryNet,
    *,
    peers: dict[int, list[int]] | None = None,
    config: MeshConfig | None = None,
    trusting: dict[int, list[int]] | None = None,
) -> list[MeshNode]:
    """``count`` nodes, node ``i`` at ``mem://node-i`` with ``peers[i]`` as its
    static peers, trusting the nodes ``trusting[i]`` (default: every other);
    not started."""
    nodes = [await open_node(tmp_path / f"node-{i}.db") for i in range(count)]
    trusting = trusting if trusting is not None else {i: list(range(count)) for i in range(count)}
    made = []
    for i, node in enumerate(nodes):
        address = f"mem://node-{i}"
        transport = NetTransport(TransportConfig(name=f"mem-{i}"), node_context(node, address),
                                 net=net, address=address)  # fmt: skip
        gossip, trust = gossip_for_node(
            tmp_path, i, node, transport, [nodes[j] for j in trusting.get(i, [])],
            config=config, static_peers=[f"mem://node-{j}" for j in (peers or {}).get(i, [])],
        )  # fmt: skip
        made.append(MeshNode(node, gossip, address, trust, transport))
    return made
