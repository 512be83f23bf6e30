"""Real `lichen run` processes for tests: homes that trust each other, start, stop,
their status, and waiting for a condition (never a fixed sleep)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..conftest import LICHEN, run_lichen
from .broker import free_port

__all__ = [
    "agent_state",
    "can_connect",
    "free_port",
    "make_nodes",
    "node_id",
    "start",
    "status",
    "stop",
    "wait_for",
]

T = TypeVar("T")


def status(home: Path) -> dict[str, Any]:
    """`lichen status --json` (a real CLI process)."""
    result: dict[str, Any] = json.loads(run_lichen("status", "--json", home=home).stdout)
    return result


def agent_state(home: Path) -> dict[str, Any] | None:
    """The running agent's own snapshot (``run/status.json``, written every 2 s),
    read directly: cheaper than `lichen status` in a wait loop."""
    try:
        state: dict[str, Any] = json.loads((home / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def node_id(home: Path) -> str:
    return run_lichen("id", home=home).stdout.strip()


def make_nodes(tmp_path: Path, n: int, *, trust: bool = True, board: str = "sim") -> list[Path]:
    """``n`` initialised homes; with ``trust``, each trusts every other."""
    homes = [tmp_path / f"node-{i}" for i in range(n)]
    for h in homes:
        run_lichen("init", "--board", board, "--name", h.name, home=h)
    ids = [node_id(h) for h in homes]
    if trust:
        for h, me in zip(homes, ids, strict=True):
            for other in ids:
                if other != me:
                    run_lichen("trust", "add", other, home=h)
    return homes


def start(
    home: Path, *args: str, log_name: str = "agent.log", env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`lichen --home HOME run ARGS…`, its output in HOME/agent.log (``env``: more
    environment variables)."""
    env = dict(os.environ) | (env or {})
    env.pop("LICHEN_HOME", None)
    log = (home / log_name).open("a")
    return subprocess.Popen(
        [str(LICHEN), "--home", str(home), "run", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def stop(processes: list[subprocess.Popen[str]]) -> None:
    """SIGTERM every process that still runs, then wait (kill after 15 s)."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def can_connect(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts a TCP connection on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float = 30.0,
    *,
    log: Path | None = None,
    process: subprocess.Popen[str] | None = None,
) -> T:
    """Poll ``check`` until it returns something true; fail naming ``what`` (with
    the log's tail) after ``timeout`` s, or at once if ``process`` exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            why = (
                f"the agent exited with {process.returncode}" if exited and process else "timed out"
            )
            raise AssertionError(f"{why} waiting for {what}\n{tail}")
        time.sleep(0.2)
