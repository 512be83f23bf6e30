"""A misbehaving plugin is isolated: the others keep their sampling rate and the
agent stays responsive. Real `lichen run` process; the misbehaving plugins are a
fixture distribution found through its dist-info, like any installed plugin."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.readings import decode_reading_batch
from agent.store.log_store import LogStore

from .conftest import LICHEN, run_lichen

FIXTURE = Path(__file__).parent / "fixtures" / "misbehaving"
NORMAL = ["a", "b", "c"]
PERIOD_MS = 100

CONFIG = (
    "\n"
    + "".join(
        f'[[sensors.sim]]\nname = "{n}"\ninterval = {PERIOD_MS / 1000}\nseed = {i}\n\n'
        for i, n in enumerate(NORMAL)
    )
    + """
[[sensors.raiser]]
name = "raiser"
interval = 0.1

[[sensors.sleeper]]
name = "sleeper"

[[sensors.spinner]]
name = "spinner"
interval = 0.1

[[sensors.flooder]]
name = "flooder"
max_rate = 200

[[sensors.hog]]
name = "hog"
interval = 0.1
isolation = "process"
"""
)


def wait_misbehaving(home: Path, timeout: float = 30.0) -> None:
    """Until every plugin has started and the misbehaving ones have shown it."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        path = home / "run" / "status.json"
        if path.exists():
            with contextlib.suppress(json.JSONDecodeError):  # written while read
                seen = {s["name"]: s for s in json.loads(path.read_text())["sensors"]}
        if (
            all(seen.get(n, {}).get("readings", 0) for n in [*NORMAL, "hog"])
            and seen.get("raiser", {}).get("restarts", 0) >= 1
            and seen.get("flooder", {}).get("rate_limited", 0) > 0
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"the plugins did not all start: {seen}")


@pytest.mark.slow
def test_misbehaving_plugins_do_not_disturb_the_others(home: Path) -> None:
    config = home / "lichen.toml"
    config.write_text(
        config.read_text().replace("flush_interval = 1.0", "flush_interval = 0.2") + CONFIG
    )
    env = dict(os.environ, LICHEN_HOME=str(home), PYTHONPATH=str(FIXTURE))
    launched = time.monotonic()
    agent = subprocess.Popen(
        [str(LICHEN), "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_misbehaving(home)
        window_start = time.time_ns() // 1_000_000
        slowest_status = 0.0
        for _ in range(8):
            time.sleep(1.0)
            asked = time.monotonic()
            status = json.loads(run_lichen("status", "--json", home=home, timeout=10).stdout)
            slowest_status = max(slowest_status, time.monotonic() - asked)
            running = status["agent"]
            assert running is not None, "the agent's status went stale"
            assert time.time_ns() // 1_000_000 - running["updated_at_ms"] < 5000
        window_end = time.time_ns() // 1_000_000
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    lifetime = time.monotonic() - launched
    assert agent.returncode == 0, stderr[-2000:]
    assert slowest_status < 5.0

    final = {
        s["name"]: s for s in json.loads((home / "run" / "status.json").read_text())["sensors"]
    }
    with LogStore(home / "log.db") as store:

        def times(name: str) -> list[int]:
            return [
                r.ts_ms
                for e in store.by_time(f"readings/{name}")
                for r in decode_reading_batch(e.body)
            ]

        expected = (window_end - window_start) / PERIOD_MS
        for name in NORMAL:
            in_window = [t for t in times(name) if window_start <= t < window_end]
            # The schedule never makes up a missed slot, so more than expected
            # is impossible; a plugin that blocked the sensors would show close to none.
            assert 0.75 * expected <= len(in_window) <= expected + 1, (
                name,
                len(in_window),
                expected,
            )
        flooded = len(times("flooder"))
        hog = len(times("hog"))
    assert (
        final["raiser"]["restarts"] >= 2
        and final["raiser"]["last_error"] == "RuntimeError: sensor on fire"
    )
    assert final["flooder"]["rate_limited"] > 1000
    assert flooded <= 200 * lifetime + 200  # max_rate = 200/s, plus one burst
    assert hog >= 1 and final["hog"]["restarts"] == 0
    assert final["sleeper"]["state"] == "hung"  # reported, and the agent still stopped
