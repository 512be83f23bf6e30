"""A board with a tiny disk quota and no cloud: it keeps sampling, drops by policy,
records what it dropped, and says so in ``lichen status`` (real ``lichen run``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import run_lichen
from .test_gossip_processes import start, status, stop

pytestmark = pytest.mark.slow

QUOTA = 24 * 1024


def test_tiny_quota_drops_by_policy_and_records_it(tmp_path: Path) -> None:
    home = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "quota-board", home=home)
    config = home / "lichen.toml"
    config.write_text(
        config.read_text()
        + f'\n[retention]\nquota = "{QUOTA}"\ninterval = 0.5\n'
        + '\n[uplink]\npriorities = { "readings/door*" = 9, "readings/bulk" = 1 }\n'
        + '\n[[sensors.sim]]\nname = "bulk"\nkind = "climate"\ninterval = 0.02\n'
    )
    agent = start(home)
    try:
        deadline = time.monotonic() + 90
        first_drop_readings = None
        while True:
            assert agent.poll() is None, (home / "agent.log").read_text()[-2000:]
            state = status(home)["agent"]
            uplink = state and state.get("uplink")
            if uplink and uplink["dropped"].get("entries"):
                stored = state["log"]["readings_stored"]
                if first_drop_readings is None:
                    first_drop_readings = stored
                elif stored > first_drop_readings + 50 and uplink["dropped"]["records"] >= 2:
                    break  # sampling goes on after the quota was hit, and drops again
            assert time.monotonic() < deadline, json.dumps(state)[-2000:]
            time.sleep(0.5)
        human = run_lichen("status", home=home).stdout
        assert "dropped" in human and "disk quota" in human
    finally:
        stop([agent])
    assert agent.returncode == 0
    run_lichen("log", "verify", home=home)
    final = status(home)
    # the log stays near its quota: one retention interval of growth at most
    assert final["bytes"] < QUOTA * 1.5, final["bytes"]
    drops = [
        json.loads(line)
        for line in run_lichen("log", "tail", "_drops", "--json", home=home).stdout.splitlines()
    ]
    assert drops, "no drop record in the log"
    bodies = [d["body"] for d in drops]
    assert all(b["reason"] == "disk quota" and b["entries"] > 0 for b in bodies)
    dropped = {c for b in bodies for c in b["collections"]}
    assert dropped and not any(c.startswith("_") for c in dropped)
    assert "readings/door" not in dropped  # the highest priority was kept
    assert "readings/bulk" in dropped  # the lowest went first
    # what is left of the lowest priorities is the newest of them
    collections = final["collections"]
    assert collections.get("_sensors") and collections.get("_drops")
