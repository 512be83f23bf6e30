"""Status is never silently stale: `lichen status` shows how old the agent's
snapshot is and says when it is stale, and the snapshot keeps being written —
with the write errors — through a full disk. Real `lichen run` processes; the
full disk is a small tmpfs mounted by the test (skipped where mounting is not
allowed)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_lichen
from .helpers.agent_process import running_agent
from .test_sensor_values import stored


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the block; unmounted after."""
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here: cannot make a small disk to fill")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it (delete it to make room)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def status(home: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(run_lichen("status", "--json", home=home).stdout)
    return value


@pytest.mark.slow
def test_status_keeps_showing_the_write_errors_through_a_full_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        home = disk / "node"
        run_lichen("init", "--board", "generic", home=home)
        config = home / "lichen.toml"
        config.write_text(
            config.read_text().replace("flush_interval = 1.0", "flush_interval = 0.1")
            + '\n[[sensors.sim]]\nname = "climate"\ninterval = 0.02\n'
        )
        with running_agent(home) as agent:
            agent.wait_for(lambda: len(stored(home, "readings/climate")) >= 10)
            filler = fill(disk)
            # while the disk is full, the snapshot still changes and counts the errors
            agent.wait_for(lambda: (status(home)["agent"] or {}).get("log", {}).get(
                "write_errors", 0) >= 3)  # fmt: skip
            agent.wait_for(lambda: status(home)["agent"]["log"]["readings_pending"] > 0)
            full = status(home)["agent"]
            assert "disk full" in full["log"]["last_write_error"]
            assert full["age_s"] < 5 and full["stale"] is False
            shown = run_lichen("status", home=home).stdout
            assert "write errors" in shown and "last write error" in shown, shown
            filler.unlink()  # room again: the pending readings are written
            agent.wait_for(lambda: status(home)["agent"]["log"]["readings_pending"] < 100)
            agent.wait_for(
                lambda: (
                    status(home)["agent"]["log"]["readings_stored"]
                    > full["log"]["readings_stored"] + full["log"]["readings_pending"]
                )
            )
            after = status(home)["agent"]
            assert after["log"]["write_errors"] >= full["log"]["write_errors"]
            assert agent.stop() == 0
        final = json.loads((home / "run" / "status.json").read_text())
        climate = next(s for s in final["sensors"] if s["name"] == "climate")
        assert climate["readings"] == len(stored(home, "readings/climate"))  # nothing lost


@pytest.mark.slow
def test_a_stale_status_says_how_old_it_is(home: Path) -> None:
    with running_agent(home) as agent:
        agent.wait_for(agent.status)
        fresh = status(home)["agent"]
        assert fresh["age_s"] < 5 and fresh["stale"] is False
        assert "s old" in run_lichen("status", home=home).stdout
        agent.process.send_signal(signal.SIGSTOP)  # a frozen agent writes no status
        try:
            agent.wait_for(lambda: status(home)["agent"]["stale"], timeout=30)
            shown = run_lichen("status", home=home).stdout
            age = status(home)["agent"]["age_s"]
            assert age >= 6
            assert "is the agent running?" in shown and "status is" in shown, shown
        finally:
            agent.process.send_signal(signal.SIGCONT)
        agent.wait_for(lambda: not status(home)["agent"]["stale"])
        assert agent.stop() == 0


@pytest.mark.slow
async def test_the_cloud_roles_status_keeps_being_written_through_a_full_disk(
    tmp_path: Path,
) -> None:
    """The cloud role's snapshot goes through the agent's status loop: on a full
    disk it is rewritten in place instead of ending the role's status for good."""
    from agent.cloud.role import CloudRole
    from agent.config import parse_config
    from agent.home import Home
    from agent.identity import Identity
    from agent.status import read_status

    from .helpers.agents import free_port

    async def updated_after(home: Home, after_ms: int) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                status = read_status(home.status_file)
                if status is not None and status["updated_at_ms"] > after_ms:
                    return status
                await asyncio.sleep(0.05)

    with small_disk(tmp_path / "disk") as disk:
        home = Home(disk / "cloud")
        home.path.mkdir()
        broker = f"mqtt://127.0.0.1:{free_port()}"  # nobody listens there: the link retries
        config = parse_config(f'[node]\nrole = "cloud"\n[cloud]\nbroker = "{broker}"\n')
        role = CloudRole(home, config, Identity.generate())
        stop = asyncio.Event()
        task = asyncio.create_task(role.run(stop))
        try:
            await updated_after(home, 0)
            filler = fill(disk)
            full_since = time.time_ns() // 1_000_000
            first = await updated_after(home, full_since)  # written while the disk is full
            second = await updated_after(home, first["updated_at_ms"])
            assert second["stale"] is False and second["role"] == "cloud"
            filler.unlink()
        finally:
            stop.set()
            await task
