"""CPU cost of the sampling → batching → log path: 50 simulated sensors at 10 Hz.

A real ``lichen run`` process samples 50 simulated climate sensors ten times a
second (500 readings/s), batches them and writes one signed entry per sensor
per second. Its CPU time (user + system, from /proc) over a measured window is
reported as a fraction of one core and per reading. The reference measured in
the same run is the floor of the threading model: a bare Python process with
50 threads that only wake up ten times a second.
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

from .common import Result

LICHEN = Path(sys.executable).with_name("lichen")
SENSORS = 50
INTERVAL = 0.1
_TICKS = os.sysconf("SC_CLK_TCK")

_IDLE_THREADS = f"""
import threading, time
stop = threading.Event()
def loop():  # how a sensor thread sleeps (SensorContext.sleep), doing nothing else
    while not stop.is_set():
        time.sleep({INTERVAL})
for _ in range({SENSORS}):
    threading.Thread(target=loop, daemon=True).start()
time.sleep(3600)
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _measure(pid: int, seconds: float) -> float:
    """CPU cores used by ``pid`` over ``seconds`` of wall time."""
    cpu0, wall0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (_cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)


def _sampled(status_file: Path) -> int:
    sensors = json.loads(status_file.read_text())["sensors"]
    return sum(int(s["readings"]) for s in sensors)


def bench_cpu(quick: bool) -> list[Result]:
    window = 10.0 if quick else 30.0
    floor_proc = subprocess.Popen([sys.executable, "-c", _IDLE_THREADS])
    try:
        time.sleep(2.0)
        floor = _measure(floor_proc.pid, window)
    finally:
        floor_proc.kill()
        floor_proc.wait()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        env = dict(os.environ, LICHEN_HOME=str(home))
        subprocess.run(
            [str(LICHEN), "init", "--board", "generic"], env=env, check=True, capture_output=True
        )
        sensors = "".join(
            f'[[sensors.sim]]\nname = "s{i}"\ninterval = {INTERVAL}\nseed = {i}\n\n'
            for i in range(SENSORS)
        )
        config = home / "lichen.toml"
        config.write_text(config.read_text() + "\n" + sensors)
        agent = subprocess.Popen([str(LICHEN), "run"], env=env, stdout=subprocess.DEVNULL)
        try:
            time.sleep(5.0)  # start-up and first flushes are not the steady state
            status_file = home / "run" / "status.json"
            before = _sampled(status_file)
            started = time.monotonic()
            cores = _measure(agent.pid, window)
            readings = _sampled(status_file) - before
            elapsed = time.monotonic() - started
        finally:
            agent.send_signal(signal.SIGINT)
            agent.wait(timeout=60)
    rate = readings / elapsed
    return [
        Result("cpu", "share of one core, 50 sensors at 10 Hz", cores, "", "target", 0.05, "≤ 1.0"),
        Result(
            "cpu", "share of one core vs wake-up floor", cores, "", "50 idle threads", floor, ""
        ),
        Result(
            "cpu",
            "CPU µs per reading",
            cores / rate * 1e6 if rate else float("nan"),
            "µs",
            "readings/s",
            rate,
            "",
        ),
    ]
