"""End to end, real processes: boards → Mosquitto → ``lichen cloud``, through outages.

* Outage test: a board samples steadily while the broker is killed and
  restarted several times and the board itself is ``kill -9``-ed mid-publish;
  at the end the cloud holds every entry of the board's feed exactly once and
  in order, no reading twice, and the board has pruned what was acknowledged.
* Acknowledgements by gossip: a board that never reaches the broker gets the
  cloud's acknowledgements from a neighbour that does, and prunes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.identity import NodeId
from agent.readings import decode_reading_batch
from agent.store.log_store import LogStore

from .conftest import LICHEN, run_lichen
from .helpers.broker import Broker, free_port, start_broker
from .test_gossip_processes import start, status, stop

pytestmark = pytest.mark.slow

SENSORS = """
[[sensors.sim]]
name = "climate"
kind = "climate"
interval = 0.05

[[sensors.sim]]
name = "door"
kind = "door"
interval = 0.2
"""


def board_config(name: str, broker: Broker | None, extra: str = "", sensors: bool = True) -> str:
    text = f'[node]\nname = "{name}"\nboard = "sim"\n\n[gpio]\npin_factory = "mock"\n'
    text += '\n[retention]\nkeep_after_ack = "0"\ninterval = 0.5\n' + extra
    # a broker crash loses what it had not saved yet: resend what no ack covered soon
    text += "\n[uplink]\nresend_after = 4.0\n"
    if broker is not None:
        text += (
            f'\n[[uplinks.mqtt]]\nname = "cloud"\nbroker = "{broker.url}"\nfleet = "test"\n'
            "reconnect_max = 3.0\n"
        )
    return text + (SENSORS if sensors else "")


def make_board(tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    run_lichen("init", "--board", "sim", "--name", name, home=home)
    return home


def start_cloud(home: Path, broker: Broker) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("LICHEN_HOME", None)
    home.mkdir(parents=True, exist_ok=True)
    log = (home.parent / f"{home.name}.log").open("a")
    return subprocess.Popen(
        [str(LICHEN), "--home", str(home), "cloud", "--broker", broker.url,
         "--http", "127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def cloud_id(home: Path) -> str:
    """The node id of the cloud whose process creates ``home``."""
    return str(
        wait_for(
            "the cloud's identity",
            lambda: (
                (home / "identity.key").exists()
                and run_lichen("id", home=home, check=False).stdout.strip()
            ),
            30,
        )
    )


def trusting(cloud: str) -> str:
    """The ``[retention]`` line of a board that takes ``cloud``'s acknowledgements."""
    return f'ack_from = ["{cloud}"]\n'


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    stop(running)


def wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.3)


def own_feed(home: Path) -> dict[str, Any]:
    (feed,) = [f for f in status(home)["feeds"] if f["own"]]
    return dict(feed)


def wait_written(home: Path, entries: int, timeout: float = 30) -> None:
    """Until the node's own feed has grown by ``entries`` from now."""
    start_seq = own_feed(home)["head_seq"]
    wait_for(
        f"{entries} more entries on {home.name}",
        lambda: own_feed(home)["head_seq"] >= start_seq + entries,
        timeout,
        home / "agent.log",
    )


def cloud_holdings(cloud: Path, author: str) -> tuple[list[int], Counter[tuple[str, int]]]:
    """The board's seqs the cloud holds, and how often each reading appears."""
    with LogStore(cloud / "log.db") as store:
        seqs, readings = [], Counter[tuple[str, int]]()
        for entry in store.feed(NodeId.parse(author).key):
            seqs.append(entry.seq)
            if entry.collection.startswith("readings/"):
                for r in decode_reading_batch(entry.body):
                    readings[(entry.collection, r.ts_ms)] += 1
    return seqs, readings


@pytest.mark.parametrize(
    "outages", [3, pytest.param(12, marks=pytest.mark.soak, id="soak-12-outages")]
)
def test_outages_and_a_crash_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, processes: list[subprocess.Popen[str]], outages: int
) -> None:
    with start_broker(tmp_path / "broker", persistence=True) as broker:
        cloud_home = tmp_path / "cloud"
        processes.append(start_cloud(cloud_home, broker))
        cloud = trusting(cloud_id(cloud_home))
        board = make_board(tmp_path, "board")
        (board / "lichen.toml").write_text(board_config("board", broker, cloud))
        me = run_lichen("id", home=board).stdout.strip()
        run_lichen("trust", "add", me, home=cloud_home)  # the cloud stores trusted boards
        agent = start(board)
        processes.append(agent)
        acked = lambda: status(board).get("acked", {}).get(me, 0)  # noqa: E731
        wait_for("a first acknowledgement", acked, 30, board / "agent.log")
        for outage in range(outages):
            wait_written(board, 5)  # connected for a while
            broker.kill()  # the broker crashes: the board keeps sampling and buffering
            wait_written(board, 5)  # a backlog builds up during the outage
            before = acked()
            broker.start()
            if outage % 3 == 1:  # and the board itself dies mid-publish
                wait_for("publishing again", lambda: acked() > before, 30)  # noqa: B023
                agent.send_signal(signal.SIGKILL)
                agent.wait(10)
                agent = start(board)
                processes.append(agent)
        wait_written(board, 5)
        stop([agent])  # a clean stop writes what was pending
        assert agent.returncode == 0
        head = own_feed(board)["head_seq"]
        assert head > 15
        # drain: the same board without sensors, until the cloud acknowledged everything
        (board / "lichen.toml").write_text(board_config("board", broker, cloud, sensors=False))
        agent = start(board)
        processes.append(agent)
        log = board / "agent.log"
        wait_for(f"the cloud to acknowledge {head}", lambda: acked() >= head, 90, log)
        # retention runs on its own period after the last ack: wait for what is asserted
        wait_for("pruning", lambda: own_feed(board)["entries"] <= 3, 30, log)
        stop([agent])
        stop(processes)
    seqs, readings = cloud_holdings(cloud_home, me)
    assert seqs == list(range(1, head + 1))  # every entry, once, in order
    assert readings and max(readings.values()) == 1  # no reading twice
    run_lichen("log", "verify", home=cloud_home)
    left = own_feed(board)
    assert left["entries"] <= 3, left  # pruned all but current sensor descriptions
    run_lichen("log", "verify", home=board)


def test_acknowledgements_travel_by_gossip(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    with start_broker(tmp_path / "broker") as broker:
        cloud_home = tmp_path / "cloud"
        processes.append(start_cloud(cloud_home, broker))
        cloud = trusting(cloud_id(cloud_home))
        mule, far = make_board(tmp_path, "mule"), make_board(tmp_path, "far")
        ids = {h: run_lichen("id", home=h).stdout.strip() for h in (mule, far)}
        run_lichen("trust", "add", ids[far], home=mule)
        run_lichen("trust", "add", ids[mule], home=far)
        for node in ids.values():  # the mule uploads far's entries: the cloud trusts both
            run_lichen("trust", "add", node, home=cloud_home)
        port = free_port()
        (mule / "lichen.toml").write_text(board_config("mule", broker, cloud, sensors=False))
        # the far board never reaches the broker; it takes the cloud's acks by gossip
        (far / "lichen.toml").write_text(board_config("far", None, extra=cloud))
        processes.append(start(mule, "--listen", f"tcp://127.0.0.1:{port}"))
        far_agent = start(far, "--peer", f"tcp://127.0.0.1:{port}")
        processes.append(far_agent)
        wait_for("far's first entries", lambda: any(f["own"] for f in status(far)["feeds"]), 30)
        wait_written(far, 5)
        stop([far_agent])  # stop sampling: a fixed feed to account for
        head = own_feed(far)["head_seq"]
        processes.append(start(far, "--peer", f"tcp://127.0.0.1:{port}"))
        wait_for(
            "the far board to learn the cloud holds its feed (by gossip)",
            lambda: status(far).get("acked", {}).get(ids[far], 0) >= head,
            90,
            far / "agent.log",
        )
        wait_for("the far board to prune", lambda: own_feed(far)["low_seq"] > head // 2, 30)
        stop(processes)
    seqs, _ = cloud_holdings(cloud_home, ids[far])
    assert seqs[:head] == list(range(1, head + 1))
    json.dumps(status(far))  # status stays readable
