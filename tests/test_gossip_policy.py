"""The access policy given to the gossip runtime rules every session it runs.

Node 0 lets nobody read ``private``; node 1 lets nobody write ``secret`` into
its log. Through real logs, channels and sessions over in-memory transports,
node 1 ends up with node 0's readings only, and neither node counts the
other as broken: a refusal by policy is not a fault."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .helpers.mesh import MemoryNet, mesh_nodes


class Rules:
    """Nobody reads ``unreadable``; nobody writes ``unwritable`` here."""

    def __init__(self, *, unreadable: str = "", unwritable: str = "") -> None:
        self.unreadable, self.unwritable = unreadable, unwritable

    def may_read(self, peer: bytes, collection: str) -> bool:
        return collection != self.unreadable

    def may_write(self, author: bytes, collection: str, seq: int) -> bool:
        return collection != self.unwritable


async def test_the_gossip_runtime_hands_its_policy_to_every_session(tmp_path: Path) -> None:
    net = MemoryNet()
    zero, one = await mesh_nodes(tmp_path, 2, net, peers={1: [0]})
    zero.gossip.policy = Rules(unreadable="private")
    one.gossip.policy = Rules(unwritable="secret")
    for collection in ("readings/sim", "private", "secret", "readings/sim"):
        await zero.node.append(10, collection=collection)
    author = zero.node.identity.node_id.key
    try:
        await zero.gossip.start()
        await one.gossip.start()
        async with asyncio.timeout(30):
            while one.node.reader.get(author, 40) is None:  # the last reading
                await asyncio.sleep(0.02)
        held = [e.collection for e in one.node.reader.feed(author)]
        assert held == ["readings/sim"] * 20, held
        assert zero.gossip.failed == one.gossip.failed == 0
        for mesh, other in ((zero, one), (one, zero)):
            record = mesh.gossip.book.get(str(other.node.identity.node_id))
            assert record is None or not record.penalty, record
        # the refusals were counted where they happened
        (session,) = one.gossip.sessions.values()
        assert session.session.report.entries_refused == 10
    finally:
        await one.close()
        await zero.close()
