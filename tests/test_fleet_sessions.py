"""Sessions of a node in a fleet fetch again what the fleet's rules kept back,
once a group is given or a rule loosened: real logs, channels, sessions and
gossip runtimes over in-memory transports, with the fleet's policy and hooks.

Node 0 founds the fleet and rules that only ``ops`` reads ``secret*``; node 1
is an approved member of ``field``. Node 1 syncs everything else, and none of
the secrets (its sessions go past them). When the admin puts node 1 in
``ops``, both nodes forget their checkpoints and restart their sessions, and
the secrets written before arrive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.fleet import COLLECTION, FleetPolicy, FleetView, fleet_id_of, op_body
from agent.mesh.fleet_link import FleetLink
from agent.store.log_store import Draft

from .helpers.mesh import MemoryNet, MeshNode, mesh_nodes

pytestmark = pytest.mark.slow


def in_fleet(mesh: MeshNode, fleet: bytes) -> None:
    """Give ``mesh``'s gossip the fleet's trust decision, policy and hooks (as
    :func:`agent.mesh.build.gossip_for` does for a node whose home names a fleet)."""
    view = FleetView(mesh.node.reader, fleet)
    mesh.gossip.trust.fleet = view
    mesh.gossip.policy = FleetPolicy(view)
    mesh.gossip.fleet = FleetLink(mesh.node, view, None)


async def held(mesh: MeshNode, author: bytes, seq: int, what: str, timeout: float = 20) -> None:
    try:
        async with asyncio.timeout(timeout):
            while mesh.node.reader.get(author, seq) is None:
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: entry {seq} never arrived") from None


async def test_a_group_given_fetches_again_what_a_rule_withheld(tmp_path: Path) -> None:
    zero, one = await mesh_nodes(tmp_path, 2, MemoryNet(), peers={1: [0]})
    admin, member = zero.node, one.node.identity.node_id.key
    (genesis,) = await admin.writer.append_many([Draft(COLLECTION, op_body("create", name="t"))])
    fleet = fleet_id_of(genesis)
    await admin.writer.append_many(
        [
            Draft(COLLECTION, op_body("add", fleet, member, role="member", groups=["field"])),
            Draft(COLLECTION, op_body("approve", fleet, member)),
            Draft(COLLECTION, op_body("rule", fleet, collection="secret*", read=["ops"])),
        ]
    )
    await admin.append(5, collection="secret/plans")  # seqs 5-9
    await admin.append(5, collection="readings/sim")  # seqs 10-14
    author = admin.identity.node_id.key
    for mesh in (zero, one):
        in_fleet(mesh, fleet)
    try:
        await zero.gossip.start()
        await one.gossip.start()
        await held(one, author, 14, "the readings")
        await asyncio.sleep(1.5)  # a trust check or two: nothing more comes
        held_by_one = [e.collection for e in one.node.reader.feed(author)]
        assert "secret/plans" not in held_by_one, held_by_one
        # the admin gives the member the group that reads the secrets
        await admin.writer.append_many(
            [Draft(COLLECTION, op_body("add", fleet, member, role="member", groups=["ops"]))]
        )
        await held(one, author, 9, "the secrets withheld before the group was given")
        assert all(one.node.reader.get(author, seq) for seq in range(5, 10))
        assert zero.gossip.failed == one.gossip.failed == 0
    finally:
        await one.close()
        await zero.close()
