"""A throwaway PostgreSQL cluster for tests: made in a temp dir, stopped by PID.

``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package
(``/usr/lib/postgresql/*/bin``; ``scripts/system-deps.sh test`` installs it).
Tests run as root, and PostgreSQL refuses to: the cluster then belongs to the
``postgres`` user and every server command runs through
``runuser -u postgres --``. The server listens on a free loopback port, with
its unix socket in the temp dir; trust authentication, fsync off. Stopping
sends SIGINT (a fast shutdown) to the postmaster's PID from ``postmaster.pid``.

Where no server can be started (binaries missing, root without a
``postgres`` user) the test skips with that reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .broker import free_port

__all__ = ["PostgresServer", "pg_bin", "start_postgres"]


def pg_bin() -> Path:
    """The newest installed server's bin directory, or skip saying why."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        pytest.skip("PostgreSQL server is not installed (scripts/system-deps.sh test installs it)")
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    directory: Path
    port: int
    pid: int
    user: str = "postgres"

    host = "127.0.0.1"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT to the postmaster, by PID); SIGKILL if it hangs."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _as_server_user(argv: list[str], user: str | None) -> list[str]:
    if user is None:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root needs runuser to start PostgreSQL as 'postgres'")
    return [runuser, "-u", user, "--", *argv]


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """A running cluster for the ``with`` block; removed afterwards."""
    bindir = pg_bin()
    user: str | None = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        user = account.pw_name
    # not under pytest's tmp_path: its parents are mode 0700, closed to 'postgres'
    directory = Path(tempfile.mkdtemp(prefix="lichen-pg-"))
    data, sockets = directory / "data", directory / "sock"
    sockets.mkdir()
    if user is not None:
        for path in (directory, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        initdb += ["-E", "UTF8", "--no-sync", "--no-instructions"]
        init = subprocess.run(
            _as_server_user(initdb, user), capture_output=True, text=True, timeout=120
        )
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr.strip()[-500:]}")
        port = free_port()
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options]
        pg_ctl += ["-l", str(directory / "server.log"), "-w", "-t", "60", "start"]
        started = subprocess.run(
            _as_server_user(pg_ctl, user), capture_output=True, text=True, timeout=90
        )
        if started.returncode != 0:
            log = (directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log}")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        server = PostgresServer(directory, port, pid)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
