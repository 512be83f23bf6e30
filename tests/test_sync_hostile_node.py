"""Hostile peers against a real node: a SQLite log, the Noise channel, the gossip runtime.

The hostile side is written here: a real channel to the node, then bytes that
break the sync protocol. The node must answer with ERROR naming the problem,
end the session and penalise the peer in its peer book."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from agent.channel import Channel, open_channel
from agent.config import MeshConfig
from agent.identity import Identity
from agent.link_api import Stream, Transport, TransportConfig
from agent.mesh.gossip import Gossip, GossipContext
from agent.mesh.peerbook import PeerBook
from agent.mesh.trust import TrustPolicy, TrustStore
from agent.sync import ErrorMessage, FrameReader, decode_message, max_frame_for
from agent.transport import memory_stream_pair

from .helpers.nodes import Node, open_node

HOSTILE = Identity(b"\x66" * 32)
# HELLO of protocol version 2: a frame every node must refuse (tests/vectors)
HELLO_V2 = bytes.fromhex(
    "2d86000258208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c65626f6172640002"
)


class MemoryTransport(Transport):
    """A transport whose incoming streams are handed to it by the test."""

    scheme = "memory"

    def __init__(self, config: TransportConfig, context: GossipContext) -> None:
        super().__init__(config, context)
        self.incoming: asyncio.Queue[Stream] = asyncio.Queue()

    async def accept(self) -> Stream:
        return await self.incoming.get()

    async def dial_in(self) -> Stream:
        """A stream to the node, as a peer that connected to it."""
        ours, theirs = memory_stream_pair(names=("memory://node", "memory://hostile"))
        await self.incoming.put(theirs)
        return ours


async def gossip_node(
    tmp_path: Path,
) -> tuple[Node, Gossip, MemoryTransport]:
    node = await open_node(tmp_path / "node.db")
    context = GossipContext("mem", logging.getLogger("test"), node.identity.node_id, lambda: "")
    transport = MemoryTransport(TransportConfig(name="mem"), context)
    gossip = Gossip(
        node.identity,
        node.writer,
        node.reader,
        [transport],
        config=MeshConfig(accept="any", stall_timeout=30.0),
        trust=TrustPolicy(TrustStore(tmp_path / "trust.json"), accept_any=True),
        peer_book=PeerBook(tmp_path / "peers.json"),
    )
    await gossip.start()
    return node, gossip, transport


async def messages_until_closed(channel: Channel) -> AsyncIterator[object]:
    reader = FrameReader(max_frame_for(16 * 1024))
    while data := await channel.receive():
        reader.feed(data)
        while (body := reader.next_frame()) is not None:
            yield decode_message(body)


async def test_a_protocol_error_is_answered_with_error_and_penalised(tmp_path: Path) -> None:
    node, gossip, transport = await gossip_node(tmp_path)
    try:
        await node.append(3)
        stream = await transport.dial_in()
        channel = await open_channel(
            stream, HOSTILE, initiator=True, trust=lambda _peer: None, timeout=10
        )
        await channel.send(HELLO_V2)
        heard = []
        async with asyncio.timeout(20):
            async for message in messages_until_closed(channel):
                heard.append(message)
        errors = [m for m in heard if isinstance(m, ErrorMessage)]
        assert errors, f"the node closed without ERROR; it said {heard}"
        assert "the peer speaks sync protocol version 2" in errors[-1].reason
        hostile = str(HOSTILE.node_id)
        async with asyncio.timeout(20):  # the session's end is recorded after its stream closed
            while (record := gossip.book.get(hostile)) is None or not record.failures:
                await asyncio.sleep(0.01)
        assert record.penalty > 0, record
        assert "version 2" in (record.last_error or "")
        await channel.close()
    finally:
        await gossip.close()
        await node.close()
