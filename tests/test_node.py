"""The node container: every committed write, whatever wrote it, reaches every
service that listens to the log exactly once — the gossip (which pokes its
sessions and the transports' adverts), the uplinks (which wake their outbox
passes) and the status snapshot (which counts the changes) — over a real
SQLite log, a real sync session and a real uplink runtime.

"Once per commit": the writer announces each group transaction that stored
entries once, however many writes it took in; the uplinks' wake-up is an
event, so it coalesces whatever happens before the outbox looks again."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.channel import open_channel
from agent.config import MeshConfig, parse_config
from agent.home import Home
from agent.identity import Identity
from agent.link_api import TransportConfig
from agent.mesh.gossip import Gossip, GossipContext
from agent.mesh.peerbook import PeerBook
from agent.mesh.session import SyncSession
from agent.mesh.trust import TrustPolicy, TrustStore
from agent.node import LogChange, Node, StatusLoop
from agent.readings import FieldSpec
from agent.runtime.agent import Agent
from agent.runtime.uplinks import UplinkRuntime
from agent.status import read_status
from agent.store.log_store import Draft
from agent.transport import memory_stream_pair
from agent.uplink.wire import ACKS_COLLECTION, ack_body

from .helpers.cloud import Feed
from .helpers.mesh import MemoryNet, NetTransport
from .helpers.nodes import accept_all, open_node

BOARD, PEER, CLOUD = Identity.generate(), Identity.generate(), Identity.generate()


class AdvertCounter(NetTransport):
    """A transport that counts how often the gossip says our heads changed."""

    adverts = 0

    def heads_changed(self) -> None:
        self.adverts += 1


class Listeners:
    """The node's real listeners, and what each has heard."""

    def __init__(self, agent: Agent, tmp_path: Path) -> None:
        node = agent.node
        me = node.identity.node_id
        context = GossipContext("mem", logging.getLogger("test.node"), me, lambda: "")
        self.transport = AdvertCounter(
            TransportConfig(name="mem"), context, net=MemoryNet(), address="mem://board"
        )
        self.gossip = Gossip(
            node,
            [self.transport],
            config=MeshConfig(),
            trust=TrustPolicy(TrustStore(tmp_path / "trust.json"), own=me),
            peer_book=PeerBook(tmp_path / "peers.json"),
        )
        config = parse_config(f'[retention]\nack_from = ["{CLOUD.node_id}"]\n')
        self.uplink = UplinkRuntime(config, node, [], state_dir=tmp_path)
        self.status: StatusLoop = agent.status_loop
        self.changes: list[LogChange] = []
        node.changed.subscribe(self.changes.append)

    async def start(self) -> None:
        await self.gossip.start()
        self.uplink.start()
        self.status.start()

    async def close(self) -> None:
        await self.status.stop()
        await self.uplink.close()
        await self.gossip.close()

    def heard(self) -> dict[str, Any]:
        """What each listener heard since the last call (the uplink's event is reset)."""
        woken = self.uplink.wake.is_set()
        self.uplink.wake.clear()
        heard = {
            "changes": [dict(c.feeds) for c in self.changes],
            "adverts": self.transport.adverts,
            "uplink woken": woken,
            "status": self.status.snapshot()["log_changes"]["commits"],
        }
        self.changes.clear()
        self.transport.adverts = 0
        return heard


def heard_once(feeds: dict[bytes, int], status_commits: int) -> dict[str, Any]:
    return {"changes": [feeds], "adverts": 1, "uplink woken": True, "status": status_commits}


async def test_a_write_from_any_origin_reaches_every_listener_once_per_commit(
    tmp_path: Path,
) -> None:
    agent = Agent(Home(tmp_path / "board"), parse_config(""), BOARD)
    node = agent.node
    await node.start()
    peer = await open_node(tmp_path / "peer.db", PEER)
    listeners = Listeners(agent, tmp_path)
    await listeners.start()
    try:
        assert listeners.heard()["changes"] == []
        me = BOARD.node_id.key

        # the board's own readings: one flush, one commit (the _sensors description with them)
        fields = {"t": FieldSpec("°C", 0.1)}
        for i in range(3):
            agent.batcher.add("readings/air", 1_760_000_000_000 + i, {"t": 20.5 + i}, fields,
                              quality=None, urgent=False)  # fmt: skip
        assert await agent.readings.flush() == 3
        assert listeners.heard() == heard_once({me: 2}, 1)

        # what a peer sends, stored by a sync session through the node's writer
        await peer.append(1, "readings/peer")
        left, right = memory_stream_pair()
        ours, theirs = await asyncio.gather(
            open_channel(left, BOARD, initiator=True, trust=accept_all),
            open_channel(right, PEER, initiator=False, trust=accept_all),
        )
        async with asyncio.timeout(30):
            report, _ = await asyncio.gather(
                SyncSession(ours, node_log(agent), BOARD.node_id).run(),
                SyncSession(theirs, peer.log, PEER.node_id).run(),
            )
        assert report.ok and report.entries_stored == 1, report
        # the session also keeps the peer's checkpoint: a commit that stores no entry
        assert listeners.heard() == heard_once({PEER.node_id.key: 1}, 2)

        # a cloud's acknowledgement, stored by the uplink runtime as an uplink hands it over
        cloud = Feed(CLOUD)
        ack = cloud.add(ACKS_COLLECTION, ack_body(2), doc_id=str(BOARD.node_id))
        assert await listeners.uplink.receive([ack.raw], via_uplink="test") == 1
        assert listeners.uplink.ledger.last_ack is not None
        assert listeners.heard() == heard_once({CLOUD.node_id.key: 1}, 3)

        # the same acknowledgement again stores nothing: nobody is told
        assert await listeners.uplink.receive([ack.raw], via_uplink="test") == 1
        # a write that stores nothing (a checkpoint) and a prune are not changes either
        await node.writer.set_checkpoint(PEER.node_id.key, 1)
        await node.writer.prune(me, 2)
        heard = listeners.heard()
        assert heard["changes"] == [] and heard["adverts"] == 0, heard
        assert heard["status"] == 3

        # several writers at once share group commits: one announcement per commit
        commits = node.writer.stats.commits
        await asyncio.gather(*(node.writer.append("notes", {"i": i}) for i in range(20)))
        heard = listeners.heard()
        group_commits = node.writer.stats.commits - commits
        assert len(heard["changes"]) == heard["adverts"] == group_commits
        assert sum(c[me] for c in heard["changes"]) == 20
        assert heard["status"] == 3 + group_commits
    finally:
        await listeners.close()
        await peer.close()
        await node.close()


def node_log(agent: Agent) -> Any:
    from agent.mesh.session import SessionLog

    return SessionLog(agent.node.reader, agent.node.writer)


async def test_a_failed_commit_announces_nothing_and_a_failing_listener_hurts_no_other(
    tmp_path: Path, caplog: Any
) -> None:
    async with Node(tmp_path / "log.db", BOARD) as node:
        heard: list[LogChange] = []

        def broken(_change: LogChange) -> None:
            raise RuntimeError("a listener's bug")

        node.changed.subscribe(broken)
        unsubscribe = node.changed.subscribe(heard.append)
        (entry,) = await node.writer.append_many([Draft("notes", {"n": 1})])
        assert [dict(c.feeds) for c in heard] == [{BOARD.node_id.key: 1}]
        (record,) = [r for r in caplog.records if r.getMessage() == "subscriber failed"]
        assert "a listener's bug" in record.fields["error"]
        # a refused entry (a fork of the stored one) commits nothing new
        fork = Feed(BOARD)
        fork.add("notes", {"n": 2})
        outcomes = await node.writer.receive_many(fork.entries)
        assert isinstance(outcomes[0], ValueError)
        assert len(heard) == 1
        unsubscribe()
        await node.writer.append("notes", {"n": 3})
        assert len(heard) == 1 and entry.seq == 1


@pytest.mark.slow
async def test_the_cloud_roles_status_is_the_agents_kind(tmp_path: Path) -> None:
    """The cloud role writes its snapshot through the same loop as the agent: it
    says its interval (from which ``lichen status`` tells its age and
    staleness), counts the log's changes, and is padded for in-place writes."""
    from agent.cloud.role import CloudRole

    from .helpers.agents import free_port

    home = Home(tmp_path / "cloud")
    home.path.mkdir()
    broker = f"mqtt://127.0.0.1:{free_port()}"  # nobody listens there: the link retries
    # no time beacons: the log does not change at all
    config = parse_config(
        f'[node]\nrole = "cloud"\n[cloud]\nbroker = "{broker}"\nbeacon_interval = 0\n'
        'http = "127.0.0.1:0"\n'  # any free port: another cloud may hold the default one
    )
    role = CloudRole(home, config, CLOUD)
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    try:
        async with asyncio.timeout(20):
            while (status := read_status(home.status_file)) is None:
                await asyncio.sleep(0.05)
            await role.compact()  # no _acks yet: nothing to prune, nothing changed
            raw = home.status_file.read_bytes()
            first = status["updated_at_ms"]
            while (status := read_status(home.status_file)) is None or (
                status["updated_at_ms"] == first
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert status["role"] == "cloud" and status["interval_s"] == 2.0
    assert status["stale"] is False and status["age_s"] < 5
    assert status["log_changes"] == {"commits": 0, "entries": 0, "at_ms": None}
    assert status["cloud"]["sink"] == "sqlite"
    assert len(raw) % 4096 == 0 and raw.rstrip() != raw  # room to rewrite in place
    final = json.loads(home.status_file.read_bytes())
    assert final["state"] == "stopped" and final["interval_s"] == 2.0


async def test_the_final_snapshot_counts_what_the_last_flush_stored(tmp_path: Path) -> None:
    """The agent stops its status loop, then writes what is pending: the
    "stopped" snapshot still counts those commits."""
    async with Node(tmp_path / "log.db", BOARD) as node:
        status = StatusLoop(node, tmp_path / "status.json", dict)
        status.start()
        await status.stop()
        await node.writer.append("notes", {"last": True})
        final = status.snapshot("stopped")
    assert final["state"] == "stopped"
    assert final["log_changes"]["commits"] == 1 and final["log_changes"]["entries"] == 1
