"""``scale``: how a real ``lichen run`` grows with the number of sensors and
with the number of peers.

* sensors: one node with 1, 10, 50 and 200 simulated climate sensors, each
  sampled ten times a second (``--quick``: 1, 10, 50);
* peers: one node (the hub, 10 such sensors) listening on loopback while 0,
  1, 4 and 8 other ``lichen run`` nodes (``--quick``: 0, 1, 4), each with the
  same 10 sensors, dial it and gossip: the hub stores every peer's feed and
  serves it to the others.

For each point, after a warm-up (and, with peers, once the hub has a session
with every peer), the hub's CPU (user + system from ``/proc/<pid>/stat``)
over a steady window as a share of one core, and its ``VmRSS`` at the end of
the window and ``VmHWM``. Each point is printed against the curve's first
point, measured in the same run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.home import Home
from agent.identity import load_identity
from agent.mesh.trust import TrustStore

from .common import Result, status_kib
from .cpu_bench import _measure

LICHEN = Path(sys.executable).with_name("lichen")
INTERVAL = 0.1  # every simulated sensor at 10 Hz
PEER_SENSORS = 10
WARM_UP = 5.0  # start-up and first flushes are not the steady state


def _sensors_toml(count: int) -> str:
    return "".join(
        f'[[sensors.sim]]\nname = "s{i}"\ninterval = {INTERVAL}\nseed = {i}\n\n'
        for i in range(count)
    )


def _homes(directory: Path, count: int, sensors: int) -> list[Path]:
    """``count`` initialised homes (``lichen init`` in parallel), each with
    ``sensors`` simulated sensors, every one trusting every other."""
    homes = [directory / f"node-{i}" for i in range(count)]
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    inits = [
        subprocess.Popen(
            [str(LICHEN), "--home", str(h), "init", "--board", "generic", "--name", h.name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for h in homes
    ]
    for h, init in zip(homes, inits, strict=True):
        _, err = init.communicate(timeout=120)
        if init.returncode:
            raise RuntimeError(f"lichen init {h.name} exited {init.returncode}: {err.decode()}")
        with (h / "lichen.toml").open("a") as toml:
            toml.write("\n" + _sensors_toml(sensors))
    ids = [str(load_identity(h / "identity.key").node_id) for h in homes]
    for h, me in zip(homes, ids, strict=True):
        trust = TrustStore(Home(h).trust_file)
        for i, other in enumerate(ids):
            if other != me:
                trust.add(other, f"node-{i}")
    return homes


def _start(home: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    log = (home / "agent.log").open("ab")
    return subprocess.Popen(
        [str(LICHEN), "--home", str(home), "run", *args],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _sessions(home: Path) -> int:
    try:
        state = json.loads((home / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return -1
    return len((state.get("sync") or {}).get("sessions") or [])


def _wait_ready(home: Path, process: subprocess.Popen[bytes], sessions: int) -> None:
    """Until the node writes its status with ``sessions`` open (60 s at most)."""
    deadline = time.monotonic() + 60
    while _sessions(home) < sessions:
        if process.poll() is not None:
            raise RuntimeError(f"lichen run exited with {process.returncode}")
        if time.monotonic() > deadline:
            log = (home / "agent.log").read_text()[-2000:]
            raise RuntimeError(f"{_sessions(home)} of {sessions} sessions after 60 s\n{log}")
        time.sleep(0.2)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in processes:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _point(directory: Path, sensors: int, peers: int, window: float) -> tuple[float, int, int]:
    """The hub's (share of one core, VmRSS KiB, VmHWM KiB) with ``sensors``
    sensors and ``peers`` peers dialling it."""
    from tests.helpers.broker import free_port

    homes = _homes(directory, 1 + peers, sensors)
    port = free_port()
    hub = _start(homes[0], "--listen", f"tcp://127.0.0.1:{port}")
    processes = [hub] + [_start(h, "--peer", f"tcp://127.0.0.1:{port}") for h in homes[1:]]
    try:
        _wait_ready(homes[0], hub, peers)
        time.sleep(WARM_UP)
        cores = _measure(hub.pid, window)
        rss, hwm = status_kib(hub.pid, "VmRSS"), status_kib(hub.pid, "VmHWM")
        if _sessions(homes[0]) < peers:
            raise RuntimeError(f"the hub lost a peer during the window: {_sessions(homes[0])}")
    finally:
        _stop(processes)
    return cores, rss, hwm


def _curve(points: list[tuple[str, tuple[float, int, int]]]) -> list[Result]:
    (first, (cores0, rss0, _)), mib = points[0], 1024.0
    rows = []
    for name, (cores, rss, hwm) in points:
        rows += [
            Result("scale", f"{name}: CPU share of one core", cores, "", first, cores0, ""),
            Result("scale", f"{name}: VmRSS", rss / mib, "MiB", first, rss0 / mib, ""),
            Result("scale", f"{name}: VmHWM", hwm / mib, "MiB", "its VmRSS", rss / mib, ""),
        ]
    return rows


def bench_scale(quick: bool) -> list[Result]:
    window = 5.0 if quick else 20.0
    sensor_counts = [1, 10, 50] if quick else [1, 10, 50, 200]
    peer_counts = [0, 1, 4] if quick else [0, 1, 4, 8]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        by_sensors = [
            (f"{n} sensors at 10 Hz", _point(tmp / f"sensors-{n}", n, 0, window))
            for n in sensor_counts
        ]
        by_peers = [
            (f"{n} peers, 10 sensors each", _point(tmp / f"peers-{n}", PEER_SENSORS, n, window))
            for n in peer_counts
        ]
    return _curve(by_sensors) + _curve(by_peers)
