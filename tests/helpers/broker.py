"""A real Mosquitto broker for tests: started on a free loopback port, stopped by PID.

``scripts/system-deps.sh test`` installs Debian's ``mosquitto``; where the
binary is missing the tests that need it skip with that reason (``make test``
installs it first, so there they run).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["Broker", "free_port", "mosquitto_binary", "start_broker"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    """The broker's path, or skip the test saying why."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("mosquitto is not installed (scripts/system-deps.sh test installs it)")


@dataclass
class Broker:
    """One Mosquitto process. ``restart()`` keeps the port and the persistence file,
    ``kill()`` is a crash (SIGKILL), ``stop()`` a clean stop."""

    directory: Path
    port: int
    persistence: bool = True
    extra: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    def _write_config(self) -> Path:
        conf = self.directory / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            # as root, mosquitto would drop to its own user, which cannot write here
            "user root" if os.geteuid() == 0 else "",
            self.extra,
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None, "broker already running"
        conf = self._write_config()
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_file.read_text() if self.log_file.exists() else ""
                self.process = None
                raise RuntimeError(f"mosquitto exited at start:\n{log}")
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), 0.2).close()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """Crash the broker (SIGKILL by PID)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM by PID; SIGKILL after 10 s)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def start_broker(directory: Path, *, persistence: bool = True, extra: str = "") -> Iterator[Broker]:
    """A running broker for the ``with`` block, stopped by PID afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    broker = Broker(directory, free_port(), persistence=persistence, extra=extra)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
