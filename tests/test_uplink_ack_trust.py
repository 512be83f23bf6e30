"""Whose acknowledgements a board believes, with a real agent, a real uplink and a
real Mosquitto broker: anyone may publish on a board's ``ack`` topic.

* A self-signed acknowledgement of everything (``seq = 2**62``) by a key the
  board was never given is refused: nothing is acknowledged, nothing pruned,
  and the upload goes on.
* An acknowledgement above the board's own head is refused and logged, even
  signed by the configured cloud; one at or below it counts and prunes.
* Only ``_acks`` entries of accepted clouds are stored from the ack topic:
  anything else in an ack payload is counted and logged, never stored.
* ``ack_from = "first-seen"`` trusts the first cloud only, and only by name.
* Acknowledgements recorded from a cloud no longer trusted are forgotten at start.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.entry import decode_entry
from agent.identity import Identity, NodeId
from agent.uplink.wire import (
    ACKS_COLLECTION,
    Topics,
    ack_body,
    decode_entry_batch,
    encode_entry_batch,
)

from .conftest import run_lichen
from .helpers.broker import Broker
from .helpers.cloud import Feed, TestClient
from .test_gossip_processes import start, status, stop
from .test_uplink_outage import wait_for as waiting

pytestmark = pytest.mark.slow

FLEET = "test"


def board_config(name: str, broker: Broker, retention: str = "") -> str:
    return (
        f'[node]\nname = "{name}"\nboard = "sim"\n\n[gpio]\npin_factory = "mock"\n'
        f'\n[retention]\nkeep_after_ack = "0"\ninterval = 0.3\n{retention}'
        "\n[uplink]\nresend_after = 2.0\n"
        f'\n[[uplinks.mqtt]]\nname = "cloud"\nbroker = "{broker.url}"\nfleet = "{FLEET}"\n'
        "reconnect_max = 1.0\n"
        '\n[[sensors.sim]]\nname = "climate"\nkind = "climate"\ninterval = 0.05\n'
    )


def make_board(tmp_path: Path, broker: Broker, retention: str = "") -> tuple[Path, str]:
    home = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "board", home=home)
    (home / "lichen.toml").write_text(board_config("board", broker, retention))
    return home, run_lichen("id", home=home).stdout.strip()


def wait_for(what: str, check: Callable[[], Any], home: Path) -> Any:
    return waiting(what, check, 30.0, home / "agent.log")


def uplink(home: Path) -> dict[str, Any]:
    agent = status(home).get("agent") or {}
    return dict(agent.get("uplink") or {})


def own(home: Path) -> dict[str, Any]:
    (feed,) = [f for f in status(home)["feeds"] if f["own"]]
    return dict(feed)


def refused(home: Path) -> dict[str, int]:
    return dict(uplink(home).get("refused") or {})


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    stop(running)


class UpWatcher:
    """Subscribes to the board's ``up`` topic: the highest own seq uploaded so far."""

    def __init__(self, broker: Broker, node: str) -> None:
        self.client = TestClient(broker.port)
        self.client.subscribe(Topics(FLEET, node).up)
        self.author = NodeId.parse(node).key

    def uploaded_above(self, seq: int, timeout: float = 30.0) -> int:
        def newer(_topic: str, payload: bytes, _retain: bool) -> bool:
            return any(
                e.author == self.author and e.seq > seq
                for e in map(decode_entry, decode_entry_batch(payload))
            )

        _topic, payload, _ = self.client.wait_for(newer, timeout)
        return max(e.seq for e in map(decode_entry, decode_entry_batch(payload)))

    def close(self) -> None:
        self.client.close()


def ack_entry(cloud: Feed, node: str, seq: int) -> bytes:
    return cloud.add(ACKS_COLLECTION, ack_body(seq), doc_id=node).raw


def test_a_forged_acknowledgement_is_refused_and_the_upload_goes_on(
    tmp_path: Path, mosquitto: Broker, processes: list[subprocess.Popen[str]]
) -> None:
    home, me = make_board(tmp_path, mosquitto)  # no [retention] ack_from: no cloud given
    watcher = UpWatcher(mosquitto, me)
    try:
        processes.append(start(home))
        first = watcher.uploaded_above(0)
        log = (home / "agent.log").read_text()
        # a board with an uplink and no cloud id says so at start, with the fix
        assert "no cloud's acknowledgements are accepted" in log, log
        assert "ack_from" in log
        # anyone may publish on the board's ack topic: a key of its own, "everything held"
        rogue = Feed(Identity.generate())
        forged = encode_entry_batch([ack_entry(rogue, me, 2**62)])
        attacker = TestClient(mosquitto.port)
        try:
            attacker.publish(Topics(FLEET, me).ack, forged)
        finally:
            attacker.close()
        judged = wait_for(
            "the board to judge the forged acknowledgement",
            lambda: refused(home).get("untrusted_cloud") or status(home)["acked"],
            home,
        )
        shown = status(home)
        assert shown["acked"] == {}, f"a forged acknowledgement counted: {shown['acked']}"
        assert judged == 1
        assert uplink(home)["clouds"] == []
        assert rogue.node not in {f["author"] for f in shown["feeds"]}
        # the upload goes on, and retention (which ran meanwhile) pruned nothing
        passes = uplink(home)["retention_passes"]
        watcher.uploaded_above(max(first, own(home)["head_seq"]))
        wait_for("two more retention passes",
                 lambda: uplink(home)["retention_passes"] >= passes + 2, home)  # fmt: skip
        feed = own(home)
        assert feed["low_seq"] == 1 and feed["entries"] == feed["head_seq"], feed
        assert "refused" in (home / "agent.log").read_text()
    finally:
        watcher.close()


def test_an_acknowledgement_above_the_boards_head_is_refused(
    tmp_path: Path, mosquitto: Broker, processes: list[subprocess.Popen[str]]
) -> None:
    cloud = Feed(Identity.generate())
    home, me = make_board(tmp_path, mosquitto, f'ack_from = ["{cloud.node}"]\n')
    watcher = UpWatcher(mosquitto, me)
    client = TestClient(mosquitto.port)
    try:
        processes.append(start(home))
        watcher.uploaded_above(3)
        head = own(home)["head_seq"]
        # even the configured cloud cannot hold entries this board never wrote
        client.publish(
            Topics(FLEET, me).ack, encode_entry_batch([ack_entry(cloud, me, head + 10_000)])
        )
        wait_for(
            "the board to judge the acknowledgement",
            lambda: refused(home).get("above_head") or status(home)["acked"],
            home,
        )
        assert status(home)["acked"] == {}, "an acknowledgement above the head counted"
        log = (home / "agent.log").read_text()
        assert "acknowledgement above this node's head refused" in log, log[-2000:]
        # one it can hold counts, and retention prunes up to it only
        client.publish(Topics(FLEET, me).ack, encode_entry_batch([ack_entry(cloud, me, 3)]))
        wait_for("the acknowledgement of 3", lambda: status(home)["acked"].get(me) == 3, home)
        wait_for("pruning up to 3", lambda: own(home)["low_seq"] == 4, home)
        assert uplink(home)["clouds"] == [cloud.node]  # configured
        watcher.uploaded_above(own(home)["head_seq"])
    finally:
        client.close()
        watcher.close()


def test_only_acknowledgements_of_accepted_clouds_are_stored_from_the_ack_topic(
    tmp_path: Path, mosquitto: Broker, processes: list[subprocess.Popen[str]]
) -> None:
    cloud = Feed(Identity.generate())
    home, me = make_board(tmp_path, mosquitto, f'ack_from = ["{cloud.node}"]\n')
    rogue = Feed(Identity.generate())
    client = TestClient(mosquitto.port)
    try:
        processes.append(start(home))
        wait_for("the uplink to connect", lambda: uplink(home).get("connected"), home)
        wait_for("a few entries", lambda: own(home)["head_seq"] >= 2, home)
        payload = encode_entry_batch(
            [
                rogue.add("readings/climate").raw,  # any entry of a stranger
                ack_entry(rogue, me, 1),  # an acknowledgement by a stranger
                cloud.add("notes", {"text": "hello"}, doc_id="n1").raw,  # the cloud, not an ack
                ack_entry(cloud, me, 1),  # the only one to keep
            ]
        )
        client.publish(Topics(FLEET, me).ack, payload)
        wait_for("the acknowledgement", lambda: status(home)["acked"].get(me) == 1, home)
        feeds = {f["author"]: f for f in status(home)["feeds"]}
        assert rogue.node not in feeds, "a stranger's entries were stored from the ack topic"
        assert feeds[cloud.node]["entries"] == 1  # its ack, not its note
        wait_for("the refusals to be counted", lambda: sum(refused(home).values()) >= 3, home)
        assert refused(home) == {"not_an_ack": 2, "untrusted_cloud": 1, "invalid": 0,
                                 "above_head": 0}  # fmt: skip
        assert status(home)["collections"].get("notes") is None
        log = (home / "agent.log").read_text()
        assert "refused entries from the ack topic" in log, log[-2000:]
    finally:
        client.close()


def test_first_seen_trusts_the_first_cloud_only(
    tmp_path: Path, mosquitto: Broker, processes: list[subprocess.Popen[str]]
) -> None:
    first, second = Feed(Identity.generate()), Feed(Identity.generate())
    home, me = make_board(tmp_path, mosquitto, 'ack_from = "first-seen"\n')
    client = TestClient(mosquitto.port)
    try:
        processes.append(start(home))
        wait_for("the uplink to connect", lambda: uplink(home).get("connected"), home)
        wait_for("a few entries", lambda: own(home)["head_seq"] >= 3, home)
        client.publish(Topics(FLEET, me).ack, encode_entry_batch([ack_entry(first, me, 1)]))
        wait_for("the first acknowledgement", lambda: status(home)["acked"].get(me) == 1, home)
        wait_for("the first cloud", lambda: uplink(home)["clouds"] == [first.node], home)
        assert first.node in (home / "state" / "clouds").read_text()
        client.publish(Topics(FLEET, me).ack, encode_entry_batch([ack_entry(second, me, 2)]))
        wait_for("the second cloud's refusal",
                 lambda: refused(home).get("untrusted_cloud") == 1, home)  # fmt: skip
        assert status(home)["acked"][me] == 1
        assert uplink(home)["clouds"] == [first.node]
        assert "trusting cloud" in (home / "agent.log").read_text()
    finally:
        client.close()


async def test_acknowledgements_of_clouds_no_longer_trusted_are_forgotten_at_start(
    tmp_path: Path,
) -> None:
    """A board that once trusted a cloud (a key pinned on first use, or a cloud since
    removed from ``ack_from``) forgets what that cloud acknowledged when it starts,
    so its upload resumes and retention does not prune on its word."""
    from agent.clock import HybridClock
    from agent.config import parse_config
    from agent.node import Node
    from agent.runtime.uplinks import UplinkRuntime
    from agent.store.log_store import Draft, LogStore

    board, forger, cloud = Identity.generate(), Identity.generate(), Identity.generate()
    me = board.node_id.key
    path = tmp_path / "log.db"
    with LogStore(path) as store:
        store.append(board, HybridClock(), [Draft("readings/x", {"i": i}) for i in range(5)])
        store.batch([lambda: store.delivery.record_ack_now(me, 2**62, forger.node_id.key)])
    config = parse_config(f'[retention]\nkeep_after_ack = "0"\nack_from = ["{cloud.node_id}"]\n')
    node = Node(path, board)
    await node.start()
    reader = node.reader
    runtime = UplinkRuntime(config, node, [], state_dir=tmp_path)
    try:
        report = await runtime.retention_now()
        assert report.pruned == 0
        assert reader.delivery.acked() == {}
        assert [e.seq for e in reader.feed(me)] == [1, 2, 3, 4, 5]
    finally:
        await runtime.close()
        await node.close()


async def test_the_runtime_lowers_the_gil_switch_interval_while_uplinks_run_and_restores_it(
    tmp_path: Path,
) -> None:
    """The 1 ms switch interval is process-wide: set only when an uplink is
    configured, and put back when the runtime closes."""
    import asyncio
    import sys

    from agent.clock import HybridClock
    from agent.config import parse_config
    from agent.link_api import Uplink, UplinkConfig
    from agent.node import Node
    from agent.plugins import ConfiguredPlugin
    from agent.runtime.uplinks import SWITCH_INTERVAL_S, UplinkRuntime
    from agent.store.log_store import Draft, LogStore

    class Idle(Uplink):
        async def run(self) -> None:
            await asyncio.Event().wait()

    board = Identity.generate()
    path = tmp_path / "log.db"
    with LogStore(path) as store:
        store.append(board, HybridClock(), [Draft("readings/x", {"i": 1})])
    node = Node(path, board)
    await node.start()
    before = sys.getswitchinterval()
    assert before > SWITCH_INTERVAL_S  # Python's default, 5 ms
    idle = ConfiguredPlugin("uplinks", "idle", Idle, UplinkConfig(name="up"))
    try:
        for links, during in (([], before), ([idle], SWITCH_INTERVAL_S)):
            runtime = UplinkRuntime(parse_config(""), node, links, state_dir=tmp_path)
            runtime.start()
            try:
                assert sys.getswitchinterval() == pytest.approx(during)
            finally:
                await runtime.close()
            assert sys.getswitchinterval() == pytest.approx(before)
    finally:
        sys.setswitchinterval(before)
        await node.close()
