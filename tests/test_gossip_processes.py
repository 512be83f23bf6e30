"""Three real `lichen run` processes on loopback gossip until they converge.

Two ways to meet: static peers in a ring (``--listen`` / ``--peer``), and mDNS
discovery over loopback multicast with no peer configured (skipped, with the
reason, where 127.0.0.1 multicast does not loop back). Every node produces
readings all along; the test takes each node's own head at one moment and
waits until every node holds every feed at least that far, with no gap, then
stops the nodes and checks `lichen log verify` everywhere.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lichen_tcp.tests.helpers import loopback_multicast_works

from .conftest import run_lichen
from .helpers.agents import free_port, make_nodes, start, status, stop

__all__ = ["start", "status", "stop"]  # shared with other process tests

pytestmark = pytest.mark.slow


def own_head(home: Path) -> tuple[str, int]:
    for feed in status(home)["feeds"]:
        if feed["own"]:
            return feed["author"], feed["head_seq"]
    raise AssertionError(f"{home} has no own feed yet")


def wait_started(homes: list[Path], timeout: float = 60.0) -> None:
    """Until every node has written its first entries."""
    deadline = time.monotonic() + timeout
    while not all(any(f["own"] for f in status(h)["feeds"]) for h in homes):
        assert time.monotonic() < deadline, "the nodes did not start writing"
        time.sleep(0.5)


def wait_converged(homes: list[Path], timeout: float = 60.0) -> None:
    """Every node holds every node's feed up to the heads taken now, without a gap."""
    wait_started(homes)
    targets = dict(own_head(h) for h in homes)
    deadline = time.monotonic() + timeout
    while True:
        behind = []
        for h in homes:
            feeds = {f["author"]: f for f in status(h)["feeds"]}
            for author, seq in targets.items():
                feed = feeds.get(author)
                if feed is None or feed["head_seq"] < seq:
                    behind.append((h.name, author[:10], feed and feed["head_seq"], seq))
                elif feed["entries"] != feed["head_seq"] - feed["low_seq"] + 1:
                    behind.append((h.name, author[:10], "gap", feed["entries"]))
        if not behind:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged after {timeout} s: {behind}")
        time.sleep(0.5)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def check_after_stop(homes: list[Path], processes: list[subprocess.Popen[str]]) -> None:
    stop(processes)
    for h in homes:
        assert processes and all(p.returncode == 0 for p in processes), (
            h / "agent.log"
        ).read_text()[-3000:]
        run_lichen("log", "verify", home=h)
        feeds = status(h)["feeds"]
        assert len(feeds) == len(homes)
        for f in feeds:  # stored once each: counts match the seq span exactly
            assert f["entries"] == f["head_seq"] - f["low_seq"] + 1


def test_three_nodes_with_static_peers_converge(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    homes = make_nodes(tmp_path, 3)
    ports = [free_port() for _ in homes]
    for i, h in enumerate(homes):
        peer = ports[(i + 1) % len(homes)]
        running.append(
            start(h, "--listen", f"tcp://127.0.0.1:{ports[i]}", "--peer", f"tcp://127.0.0.1:{peer}")
        )
    wait_converged(homes)
    # live: entries keep flowing while the sessions stay open
    author, converged_at = own_head(homes[0])
    deadline = time.monotonic() + 20
    while own_head(homes[0])[1] < converged_at + 3:
        assert time.monotonic() < deadline, f"{author[:10]} stopped writing"
        time.sleep(0.5)
    wait_converged(homes, timeout=20)
    sync = status(homes[0])["agent"]["sync"]
    assert sync["sessions"], sync
    check_after_stop(homes, running)


@pytest.mark.skipif(
    not loopback_multicast_works(), reason="multicast does not loop back on 127.0.0.1 here"
)
def test_three_nodes_find_each_other_over_mdns_and_converge(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    homes = make_nodes(tmp_path, 3)
    for h in homes:
        with (h / "lichen.toml").open("a") as toml:
            toml.write(
                "\n[[transports.tcp]]\n"
                'name = "lan"\nhost = "127.0.0.1"\nport = 0\n'
                'interfaces = ["127.0.0.1"]\nannounce_interval = 1.0\n'
            )
        running.append(start(h))
    wait_converged(homes)
    check_after_stop(homes, running)
    # the peer book (saved at the latest on stopping) knows both others, found by
    # mDNS (nodes of other tests on this host may be sighted too: only ours count)
    others = {run_lichen("id", home=h).stdout.strip() for h in homes[1:]}
    peers = json.loads(run_lichen("peers", "--json", home=homes[0]).stdout)
    ours = [p for p in peers if p["node"] in others]
    assert len(ours) == 2 and all(p["syncs"] >= 1 for p in ours), peers


def test_lichen_sync_fetches_once_and_refuses_an_untrusted_node(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    board, mule = make_nodes(tmp_path, 2)
    stranger = tmp_path / "stranger"
    run_lichen("init", "--board", "generic", "--name", "stranger", home=stranger)
    port = free_port()
    running.append(start(board, "--listen", f"tcp://127.0.0.1:{port}"))
    wait_started([board])
    address = f"tcp://127.0.0.1:{port}"
    summary = json.loads(run_lichen("sync", address, "--json", home=mule).stdout)
    assert summary["error"] is None and summary["entries_stored"] > 0, summary
    assert summary["peer"] == run_lichen("id", home=board).stdout.strip()
    assert len(summary["sas"]) == 6
    board_feed = own_head(board)[0]
    held = {f["author"]: f for f in status(mule)["feeds"]}
    assert held[board_feed]["entries"] == summary["entries_stored"]
    run_lichen("log", "verify", home=mule)
    refused = run_lichen("sync", address, home=stranger, check=False)
    assert refused.returncode == 1, refused
    assert "not trusted" in refused.stderr, refused.stderr
    assert not status(stranger)["feeds"]  # nothing came, nothing was lost
