"""Links are instances, addresses are the plugins': real `lichen run` processes.

* every ``--listen`` address is a listener of its own, and ``--peer`` is dialled;
* a transport that cannot start (its port is taken) is retried with backoff
  while the agent runs on, and starts once the port is free;
* ``--uplink`` goes through the uplink plugin's own address parser;
* bad addresses are one clear line naming the address and the fix, from the
  command line and from ``lichen.toml``, never a traceback.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import run_lichen
from .helpers.agents import (
    agent_state,
    can_connect,
    free_port,
    make_nodes,
    node_id,
    start,
    status,
    stop,
    wait_for,
)
from .helpers.broker import Broker

pytestmark = pytest.mark.slow


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def _transports(home: Path) -> dict[str, dict[str, object]]:
    state = agent_state(home)
    sync = (state or {}).get("sync") or {}
    return {t["address"] or t["name"]: t for t in sync.get("transports", [])}


def _holds_feed_of(home: Path, author: str) -> bool:
    return any(f["author"] == author for f in status(home)["feeds"])


def test_every_listen_address_listens_and_peers_are_dialled(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    one, two = make_nodes(tmp_path, 2)
    first, second, far = free_port(), free_port(), free_port()
    running.append(start(two, "--listen", f"tcp://127.0.0.1:{far}"))
    agent = start(
        one,
        "--listen", f"tcp://127.0.0.1:{first}",
        "--listen", f"tcp://127.0.0.1:{second}",
        "--peer", f"tcp://127.0.0.1:{far}",
    )  # fmt: skip
    running.append(agent)
    log = one / "agent.log"
    wait_for(f"port {first} to listen", lambda: can_connect(first), log=log, process=agent)
    wait_for(f"port {second} to listen", lambda: can_connect(second), log=log, process=agent)
    listed = wait_for("both listeners in the status", lambda: len(_transports(one)) == 2 or None,
                      log=log, process=agent)  # fmt: skip
    assert listed
    assert set(_transports(one)) == {f"tcp://127.0.0.1:{first}", f"tcp://127.0.0.1:{second}"}
    # --peer was dialled: the far node's feed arrives
    far_id = node_id(two)
    wait_for("the --peer's feed", lambda: _holds_feed_of(one, far_id), log=log, process=agent)


def test_a_transport_that_cannot_start_is_retried_and_the_agent_runs_on(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    (home,) = make_nodes(tmp_path, 1)
    taken = free_port()
    blocker = socket.create_server(("127.0.0.1", taken))
    log = home / "agent.log"
    try:
        agent = start(home, "--listen", f"tcp://127.0.0.1:{taken}")
        running.append(agent)

        def retrying() -> dict[str, object] | None:
            return next((t for t in _transports(home).values() if t["state"] == "retrying"), None)

        stuck = wait_for("the transport to be retried", retrying, log=log, process=agent)
        assert f"127.0.0.1:{taken}" in str(stuck["error"]), stuck
        assert stuck["failures"] and stuck["retry_at_ms"], stuck
        wait_for("the retry in the log",
                 lambda: "transport failed to start; will retry" in log.read_text(),
                 log=log, process=agent)  # fmt: skip
        shown = run_lichen("status", home=home).stdout
        assert "retrying" in shown and "address already in use" in shown.lower(), shown
    finally:
        blocker.close()
    wait_for("the freed port to listen", lambda: can_connect(taken), timeout=90, log=log,
             process=agent)  # fmt: skip
    wait_for("the transport running",
             lambda: [t["state"] for t in _transports(home).values()] == ["running"],
             timeout=10, log=log, process=agent)  # fmt: skip


def test_uplink_address_from_the_command_line(
    tmp_path: Path, running: list[subprocess.Popen[str]], mosquitto: Broker
) -> None:
    (home,) = make_nodes(tmp_path, 1)
    agent = start(home, "--uplink", f"mqtt://127.0.0.1:{mosquitto.port}")
    running.append(agent)

    def connected() -> bool:
        uplink = (agent_state(home) or {}).get("uplink") or {}
        return any(u["connected"] for u in uplink.get("uplinks", []))

    wait_for("the uplink to connect", connected, log=home / "agent.log", process=agent)
    names = [u["name"] for u in (agent_state(home) or {})["uplink"]["uplinks"]]
    assert names == ["cloud"], names  # the plugin names a command-line instance


@pytest.mark.parametrize(
    ("args", "address"),
    [
        (["run", "--listen", "tcp://127.0.0.1:99999"], "tcp://127.0.0.1:99999"),
        (["run", "--peer", "tcp://127.0.0.1:abc"], "tcp://127.0.0.1:abc"),
        (["run", "--peer", "tcp://127.0.0.1:99999"], "tcp://127.0.0.1:99999"),
        (["sync", "tcp://127.0.0.1:99999"], "tcp://127.0.0.1:99999"),
        (["sync", "tcp://127.0.0.1:abc"], "tcp://127.0.0.1:abc"),
        (["run", "--uplink", "mqtt://broker:99999"], "mqtt://broker:99999"),
    ],
)
def test_a_bad_port_on_the_command_line_is_one_clear_line(
    home: Path, args: list[str], address: str
) -> None:
    result = run_lichen(*args, home=home, check=False)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    assert repr(address) in result.stderr, result.stderr
    assert "the port must be a number from" in result.stderr, result.stderr
    assert "Fix: " in result.stderr and "lichen.toml" not in result.stderr, result.stderr


def test_a_bad_port_in_lichen_toml_names_the_key_and_the_fix(home: Path) -> None:
    config = home / "lichen.toml"
    config.write_text(
        config.read_text() + '\n[[transports.tcp]]\nname = "lan"\npeers = ["tcp://10.0.0.2:abc"]\n'
    )
    result = run_lichen("run", home=home, check=False)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert '[[transports.tcp]] "lan" peers' in line and "'tcp://10.0.0.2:abc'" in line, line
    assert "the port must be a number from 1 to 65535. Fix: " in line, line


def test_the_port_defaults_to_7400(home: Path) -> None:
    result = run_lichen("sync", "tcp://127.0.0.1", "--timeout", "10", home=home, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    # nothing of ours listens there: the error names the address dialled
    assert "tcp://127.0.0.1:7400" in result.stderr or result.returncode == 0, result
