"""The notify protocol (agent.sdnotify) over real AF_UNIX datagram sockets, and a
real `lichen run` speaking it: READY, STATUS, WATCHDOG while its loop turns,
STOPPING; and no WATCHDOG while its flush loop is stuck on a locked log."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import Notifier, socket_address

from .conftest import run_lichen

LICHEN = Path(sys.executable).with_name("lichen")


class NotifySocket:
    """A bound datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, *, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dir: str | None = None
        if abstract:
            self.name = f"@lichen-test-{os.getpid()}-{time.monotonic_ns()}"
        else:  # a short path: sun_path holds 108 bytes
            self.dir = tempfile.mkdtemp(prefix="lichen-n", dir="/tmp")
            self.name = os.path.join(self.dir, "notify")
        self.sock.bind(socket_address(self.name))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, key: str, timeout: float = 30.0, value: str | None = None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            fields = self.receive(left)
            if fields is not None and key in fields and value in (None, fields[key]):
                return fields
        raise AssertionError(f"no {key} within {timeout} s; received {self.messages}")

    def close(self) -> None:
        self.sock.close()
        if self.dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.name)
            os.rmdir(self.dir)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest) -> Iterator[NotifySocket]:
    s = NotifySocket(abstract=request.param == "abstract")
    yield s
    s.close()


def test_notify_sends_assignments_to_the_socket(notify_socket: NotifySocket):
    notifier = Notifier(notify_socket.name)
    assert notifier.notify(READY=1, STATUS="running: 2 sensors\nand more")
    assert notify_socket.receive(5) == {"READY": "1", "STATUS": "running: 2 sensors and more"}
    assert notifier.stopping("stopping")
    assert notify_socket.receive(5) == {"STOPPING": "1", "STATUS": "stopping"}
    assert notifier.sent == 2


def test_from_environ_reads_and_unsets_the_variables(notify_socket: NotifySocket):
    env = {
        "NOTIFY_SOCKET": notify_socket.name,
        "WATCHDOG_USEC": "3000000",
        "WATCHDOG_PID": str(os.getpid()),
        "OTHER": "kept",
    }
    notifier = Notifier.from_environ(env)
    assert notifier.enabled and notifier.watchdog_s == 3.0
    assert env == {"OTHER": "kept"}  # our children do not speak for us
    assert notifier.watchdog()
    assert notify_socket.receive(5) == {"WATCHDOG": "1"}


def test_watchdog_for_another_process_is_not_ours(notify_socket: NotifySocket):
    env = {"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    notifier = Notifier.from_environ(env)
    assert notifier.enabled and notifier.watchdog_s is None
    assert not notifier.watchdog()
    assert notify_socket.receive(0.2) is None


def test_without_a_service_manager_nothing_is_sent():
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_s is None
    assert not notifier.ready("running") and notifier.sent == 0
    assert not Notifier("relative/path").enabled  # systemd passes absolute or abstract only


def test_a_socket_nobody_listens_on_is_counted_not_raised(tmp_path: Path):
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.ready()
    assert notifier.failed == 1 and "gone" in (notifier.last_error or "")


def _start(home: Path, sock: NotifySocket, watchdog_usec: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LICHEN_HOME=str(home), NOTIFY_SOCKET=sock.name)
    env["WATCHDOG_USEC"] = str(watchdog_usec)
    env.pop("WATCHDOG_PID", None)
    out = (home.parent / "agent.log").open("wb")
    return subprocess.Popen([str(LICHEN), "run"], env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.mark.slow
def test_lichen_run_says_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, notify_socket: NotifySocket
):
    home = tmp_path / "home"
    run_lichen("init", "--board", "sim", "--name", "svc", home=home)
    process = _start(home, notify_socket, watchdog_usec=600_000)
    try:
        ready = notify_socket.wait_for("READY")
        assert ready["READY"] == "1" and ready["STATUS"] == "running: 4 sensors"  # the sim board's
        # the status snapshot exists by then: READY means running
        assert (home / "run" / "status.json").exists()
        pings = [notify_socket.wait_for("WATCHDOG", timeout=5.0) for _ in range(4)]
        assert all(p == {"WATCHDOG": "1"} for p in pings)
        times = [t for t, f in notify_socket.messages if "WATCHDOG" in f]
        gaps = [b - a for a, b in zip(times, times[1:])]
        # every half of WATCHDOG_USEC (the median: a loaded machine delays some)
        assert 0.15 < statistics.median(gaps) < 0.45, gaps
        process.send_signal(signal.SIGTERM)
        stopping = notify_socket.wait_for("STOPPING", timeout=30.0)
        assert stopping["STATUS"].startswith("stopping")
        assert _stop(process) == 0
    finally:
        _stop(process)


@pytest.mark.slow
def test_watchdog_stops_while_the_flush_loop_is_stuck(tmp_path: Path):
    """Another process holds the log's write lock: the agent's flush waits on it
    (up to SQLite's busy timeout), its flush loop stops turning, and the watchdog
    pings stop with it — systemd would restart the agent. Once the lock is
    released the loop turns and the pings come back."""
    sock = NotifySocket(abstract=True)
    home = tmp_path / "home"
    run_lichen("init", "--board", "sim", "--name", "stuck", home=home)
    process = _start(home, sock, watchdog_usec=1_000_000)
    locker = sqlite3.connect(home / "log.db", isolation_level=None, timeout=30)
    try:
        sock.wait_for("READY")
        sock.wait_for("WATCHDOG", timeout=5.0)
        locker.execute("BEGIN IMMEDIATE")  # the writer's BEGIN IMMEDIATE now waits
        log = home.parent / "agent.log"
        deadline = time.monotonic() + 20
        while "flush loop stuck" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            sock.receive(0.2)
        while sock.receive(0.001) is not None:  # pings sent before it decided
            pass
        quiet_from = time.monotonic()
        while time.monotonic() < quiet_from + 1.5:  # longer than the watchdog timeout
            fields = sock.receive(quiet_from + 1.5 - time.monotonic())
            assert fields is None or "WATCHDOG" not in fields, "fed while the loop was stuck"
        locker.execute("ROLLBACK")
        sock.wait_for("WATCHDOG", timeout=10.0)
        deadline = time.monotonic() + 10
        while "flush loop turning again" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            sock.receive(0.1)
        assert _stop(process) == 0
    finally:
        locker.close()
        _stop(process)
        sock.close()
