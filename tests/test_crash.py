"""Crash safety: kill -9 at random moments loses nothing reported stored and
never corrupts the log."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.home import Home
from agent.identity import load_identity
from agent.store.log_store import LogStore
from agent.store.verify import verify_log

from .conftest import run_lichen

ROOT = Path(__file__).resolve().parents[1]


def _kill_writer_once(home: Path, durability: str, rng: random.Random) -> list[tuple[int, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.crash_writer", str(home), durability],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait until it writes, then kill at a random moment
    first = proc.stdout.readline()  # type: ignore[union-attr]
    assert first.startswith("stored"), proc.stderr.read()  # type: ignore[union-attr]
    time.sleep(rng.uniform(0.0, 0.4))
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    reported = [first] + out.splitlines()
    return [
        (int(line.split()[1]), line.split()[2]) for line in reported if line.startswith("stored ")
    ]


def _check_log(home: Path, reported: list[tuple[int, str]]) -> int:
    node = load_identity(Home(home).identity).node_id.key
    with LogStore(Home(home).database) as store:
        report = verify_log(store)
        assert report.ok, report.faults
        held = {e.seq: e.hash.hex() for e in store.feed(node)}
        for seq, digest in reported:
            assert held.get(seq) == digest, f"entry {seq} was reported stored but is missing"
        assert sorted(held) == list(range(1, len(held) + 1))  # no holes
        return len(held)


def _crash_loop(home: Path, iterations: int, durability: str) -> None:
    rng = random.Random(1234)
    everything: list[tuple[int, str]] = []
    previous = 0
    for _ in range(iterations):
        everything += _kill_writer_once(home, durability, rng)
        count = _check_log(home, everything)
        assert count >= previous
        previous = count
    assert run_lichen("log", "verify", home=home).returncode == 0
    assert previous > iterations  # it really wrote between kills


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["normal", "full"])
def test_kill_9_during_group_commits_loses_nothing_reported(home: Path, durability: str) -> None:
    _crash_loop(home, 12, durability)


@pytest.mark.soak
def test_kill_9_soak(home: Path) -> None:
    _crash_loop(home, 300, "normal")


@pytest.mark.slow
def test_kill_9_of_the_running_agent(tmp_path: Path) -> None:
    """`lichen run` with fast simulated sensors, killed -9 over and over."""
    home = tmp_path / "node"
    run_lichen("init", "--board", "sim", home=home)
    config = home / "lichen.toml"
    text = config.read_text().replace("flush_interval = 1.0", "flush_interval = 0.05")
    config.write_text(
        text.replace("interval = 1.0", "interval = 0.01").replace(
            "interval = 0.5", "interval = 0.02"
        )
    )
    rng = random.Random(99)
    previous_head = 0
    env = dict(os.environ, LICHEN_HOME=str(home))
    lichen = Path(sys.executable).with_name("lichen")
    for _ in range(8):
        proc = subprocess.Popen(
            [str(lichen), "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait for the first write
            status = json.loads(run_lichen("status", "--json", home=home).stdout)
            if status["entries"] > 0 and (status["feeds"][0]["head_seq"] > previous_head):
                break
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        status = json.loads(run_lichen("status", "--json", home=home).stdout)
        head = status["feeds"][0]["head_seq"]
        assert head > previous_head
        previous_head = head
        assert run_lichen("log", "verify", home=home).returncode == 0
    assert previous_head >= 8
