"""A real ``lichen run`` process on a test home: its status snapshot, its log
lines, and a clean stop that reports the exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["FIXTURE_PLUGINS", "RunningAgent", "running_agent"]

LICHEN = Path(sys.executable).with_name("lichen")
#: a fixture distribution of misbehaving sensor plugins (found through its dist-info)
FIXTURE_PLUGINS = Path(__file__).parent.parent / "fixtures" / "misbehaving"


class RunningAgent:
    def __init__(self, home: Path, process: subprocess.Popen[bytes], output: Path) -> None:
        self.home = home
        self.process = process
        self.output = output
        self.returncode: int | None = None

    def status(self) -> dict[str, Any] | None:
        """This agent's ``run/status.json`` (None until it wrote one, or mid-rewrite)."""
        try:
            value: dict[str, Any] = json.loads((self.home / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return None
        return value if value.get("pid") == self.process.pid else None

    def sensor(self, name: str) -> dict[str, Any] | None:
        status = self.status()
        for s in status["sensors"] if status else ():
            if s["name"] == name:
                return dict(s)
        return None

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], object], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the agent exited ({self.process.returncode}):\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait; the exit code (killed with SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        return self.returncode


@contextmanager
def running_agent(home: Path, *args: str, plugins: Path | None = None) -> Iterator[RunningAgent]:
    """``lichen run`` on ``home`` (stdout and stderr to ``home/agent.log``); stopped
    (by its pid) when the block ends if the test did not stop it."""
    env = dict(os.environ, LICHEN_HOME=str(home))
    if plugins is not None:
        env["PYTHONPATH"] = str(plugins)
    output = home.parent / f"{home.name}-agent.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [str(LICHEN), "run", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    agent = RunningAgent(home, process, output)
    try:
        yield agent
    finally:
        agent.stop()
