"""Live sessions between real `lichen run` processes, and what may happen next to them.

* ``lichen sync`` from a node whose own agent keeps a live session with the
  same peer: the one-shot sync succeeds, and the agents' session stays.
* ``lichen peers`` shows the live sessions and what they moved so far.
* ``lichen trust remove`` on one node ends the live session on both sides
  within seconds, and no new session is admitted.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_lichen
from .helpers.agents import agent_state, free_port, make_nodes, node_id, start, stop, wait_for

pytestmark = pytest.mark.slow

#: a TCP transport without mDNS: only the addresses a test gives are dialled
NO_MDNS = '\n[[transports.tcp]]\nname = "lan"\nadvertise = false\nbrowse = false\n'


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def pair(tmp_path: Path) -> tuple[Path, Path]:
    one, two = make_nodes(tmp_path, 2)
    for home in (one, two):
        with (home / "lichen.toml").open("a") as config:
            config.write(NO_MDNS)
    return one, two


def live_sessions(home: Path, peer: str) -> list[dict[str, Any]]:
    sync = (agent_state(home) or {}).get("sync") or {}
    return [s for s in sync.get("sessions", []) if s["peer"] == peer and s.get("live", True)]


def test_lichen_sync_works_while_the_nodes_own_agent_runs(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    one, two = pair(tmp_path)
    first, second = free_port(), free_port()
    running.append(start(two, "--listen", f"tcp://127.0.0.1:{second}"))
    agent = start(one, "--listen", f"tcp://127.0.0.1:{first}", "--peer",
                  f"tcp://127.0.0.1:{second}")  # fmt: skip
    running.append(agent)
    id_one, id_two = node_id(one), node_id(two)
    log = one / "agent.log"
    wait_for("the agents' live session", lambda: live_sessions(one, id_two)
             and live_sessions(two, id_one), log=log, process=agent)  # fmt: skip
    for _ in range(3):  # every time, not by luck of the timing
        result = run_lichen("sync", f"tcp://127.0.0.1:{second}", "--json", home=one, check=False)
        assert result.returncode == 0, (result.stdout, result.stderr)
        summary = json.loads(result.stdout)
        assert summary["error"] is None and summary["peer"] == id_two, summary
        assert summary["entries_received"] >= summary["entries_stored"] >= 0, summary
        assert summary["bytes_received"] > 0 and summary["bytes_sent"] > 0, summary
    # the agents' session was not displaced by the one-shot syncs
    assert live_sessions(one, id_two) and live_sessions(two, id_one)
    text = run_lichen("sync", f"tcp://127.0.0.1:{second}", home=one).stdout
    assert text.startswith(f"synced with {id_two}") and "entries" in text, text


def start_pair(tmp_path: Path, running: list[subprocess.Popen[str]]) -> tuple[Path, Path, str, str]:
    """Two agents dialling each other, once their live session is open."""
    one, two = pair(tmp_path)
    first, second = free_port(), free_port()
    for home, mine, theirs in ((one, first, second), (two, second, first)):
        running.append(start(home, "--listen", f"tcp://127.0.0.1:{mine}", "--peer",
                             f"tcp://127.0.0.1:{theirs}"))  # fmt: skip
    id_one, id_two = node_id(one), node_id(two)
    wait_for("the agents' live session", lambda: live_sessions(one, id_two)
             and live_sessions(two, id_one), log=one / "agent.log")  # fmt: skip
    return one, two, id_one, id_two


def test_peers_shows_live_sessions_and_their_progress(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    one, _two, _id_one, id_two = start_pair(tmp_path, running)

    def moved() -> list[dict[str, Any]]:
        (peer,) = [p for p in json.loads(run_lichen("peers", "--json", home=one).stdout)
                   if p["node"] == id_two]  # fmt: skip
        return [s for s in peer["sessions"] if s["entries_received"] > 0 and s["live"]]

    (session,) = wait_for("entries moved in the live session", moved, log=one / "agent.log")
    assert session["since_ms"] > 0 and session["entries_sent"] >= 0, session
    text = run_lichen("peers", home=one).stdout
    assert "now: live since" in text and "this session" in text, text
    assert "FAILED" not in text and "not trusted" not in text, text


def test_revoking_trust_ends_the_live_session_on_both_sides(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    one, two, id_one, id_two = start_pair(tmp_path, running)
    log = one / "agent.log"
    said = run_lichen("trust", "remove", id_two, home=one).stdout
    assert "within a few seconds" in said, said
    wait_for("the session to end on both sides",
             lambda: not live_sessions(one, id_two) and not live_sessions(two, id_one)
             and not _sessions(one) and not _sessions(two), timeout=15, log=log)  # fmt: skip
    assert "ending session: peer no longer trusted" in log.read_text()
    # both keep trying (each has the other as a static peer): every try is refused
    wait_for("two more refusals", lambda: log.read_text().count("peer refused") >= 2,
             timeout=60, log=log)  # fmt: skip
    assert not _sessions(one) and not _sessions(two)
    assert id_two in log.read_text().split("peer refused", 1)[1]


def _sessions(home: Path) -> list[dict[str, Any]]:
    sync = (agent_state(home) or {}).get("sync") or {}
    return list(sync.get("sessions", []))
