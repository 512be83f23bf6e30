"""The gossip runtime's sessions, in one process: real logs, channels and sessions
over in-memory transports with a network's latency.

* Two nodes that dial each other at the same moment keep one live session and
  end the other cleanly: no warning, nothing counted or recorded as failed.
* A node seen on the LAN that this node does not trust is not dialled, not
  put in the peer book, and nothing suggests trusting it; once the operator
  trusts it, it is dialled.
* A TCP transport that only dials (no ``--listen``) ends the accept loop at
  once instead of logging ``accept failed`` every second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from lichen_tcp import TcpConfig, TcpTransport

from agent.mesh.trust import TrustStore

from .helpers.mesh import MemoryNet, MeshNode, gossip_for_node, mesh_nodes, node_context
from .helpers.nodes import open_node


async def until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def has_session(node: MeshNode, peer: str) -> bool:
    return any(str(s.peer) == peer for s in node.gossip.sessions.values())


def settled(a: MeshNode, b: MeshNode) -> bool:
    """One session each, and the other one of the pair ended on both sides."""
    return all(
        len(n.gossip.sessions) == 1 and n.gossip.completed + n.gossip.failed >= 1 for n in (a, b)
    )


@pytest.mark.slow
async def test_two_nodes_dialing_each_other_at_once_keep_one_session_without_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lichen.mesh")
    a, b = await mesh_nodes(tmp_path, 2, MemoryNet(), peers={0: [1], 1: [0]})
    try:
        await a.node.append(5)
        await b.node.append(7)
        await asyncio.gather(a.gossip.start(), b.gossip.start())  # both dial at once
        await until("one session each", lambda: settled(a, b))
        for n in (a, b):
            assert n.gossip.failed == 0, n.gossip.status()
            for record in n.gossip.book.all():
                assert record.failures == 0 and record.last_sync_ok is not False, record
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not warnings, [r.getMessage() for r in warnings]
        # both kept the same connection: the one the smaller key opened
        (kept_a,) = a.gossip.sessions.values()
        (kept_b,) = b.gossip.sessions.values()
        smaller = min(a.node.identity.node_id.key, b.node.identity.node_id.key)
        assert kept_a.initiator == kept_b.initiator == smaller
        await until("both logs complete", lambda: a.node.keys() == b.node.keys())
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.slow
async def test_a_stranger_seen_on_the_lan_is_not_dialled_nor_suggested(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lichen")
    # node 0 trusts node 2 only; node 1, a stranger to it on its LAN, trusts node 0
    a, stranger, friend = await mesh_nodes(
        tmp_path, 3, MemoryNet(), trusting={0: [2], 1: [0], 2: [0]}
    )
    try:
        await stranger.transport.start()  # reachable, but nobody takes its calls yet
        await friend.gossip.start()
        await a.gossip.start()
        stranger_id, friend_id = (str(n.node.identity.node_id) for n in (stranger, friend))
        a.transport.sight(stranger_id, stranger.address)
        a.transport.sight(friend_id, friend.address)
        # the friend is dialled: the stranger's sighting went through the same round
        await until("a session with the trusted node", lambda: has_session(a, friend_id))
        assert stranger.transport.incoming.empty(), "a stranger was dialled"
        assert a.gossip.book.get(stranger_id) is None and a.gossip.book.get(friend_id)
        assert stranger.address not in a.gossip.planner.targets
        texts = [r.getMessage() + str(r.__dict__) for r in caplog.records]
        assert not [t for t in texts if "trust add" in t], texts
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        # the operator trusts it: within seconds it is a target, and dialled
        await stranger.gossip.start()
        TrustStore(a.trust.path).add(stranger_id)  # as `lichen trust add` does
        await until("a session with the newly trusted node", lambda: has_session(a, stranger_id))
    finally:
        await asyncio.gather(a.close(), stranger.close(), friend.close())


async def test_a_tcp_node_that_only_dials_does_not_wait_for_incoming_links(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lichen.mesh")
    node = await open_node(tmp_path / "node")
    config = TcpConfig(name="tcp", listen=False, advertise=False, browse=False)
    transport = TcpTransport(config, node_context(node, "tcp"))
    gossip, _ = gossip_for_node(tmp_path, 0, node, transport, [node])
    await gossip.start()
    try:
        await until(
            "the accept loop to end",
            lambda: "accept tcp" not in {task.get_name() for task in gossip._tasks},
            timeout=5.0,
        )
        assert not [r for r in caplog.records if "accept failed" in r.getMessage()]
    finally:
        await gossip.close()
        await node.close()
