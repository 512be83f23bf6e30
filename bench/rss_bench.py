"""Peak memory of a real ``lichen run`` after one million simulated readings.

The agent runs as its own process with 10 simulated climate sensors at 1 kHz
(10 000 readings/s, a hundred times a busy board); when its status file
reports a million readings stored, its peak RSS (VmHWM) is read from /proc.
References measured in the same run: a bare Python interpreter, and the same
agent right after start-up.
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

from .common import Result, status_kib

LICHEN = Path(sys.executable).with_name("lichen")
SENSORS = 10
INTERVAL = 0.001


def _hwm_kib(pid: int) -> int:
    return status_kib(pid, "VmHWM")


def _bare_python_kib() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(1.0)
    kib = _hwm_kib(proc.pid)
    proc.kill()
    proc.wait()
    return kib


def bench_rss(quick: bool) -> list[Result]:
    target = 100_000 if quick else 1_000_000
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
        proc = subprocess.Popen([str(LICHEN), "run"], env=env, stdout=subprocess.DEVNULL)
        status_file = home / "run" / "status.json"
        started = time.monotonic()
        startup_kib = 0
        stored = 0
        try:
            while stored < target:
                time.sleep(0.5)
                if proc.poll() is not None:
                    raise RuntimeError(f"lichen run exited with {proc.returncode}")
                try:
                    stored = json.loads(status_file.read_text())["log"]["readings_stored"]
                except (OSError, ValueError, KeyError):
                    continue
                if not startup_kib:
                    startup_kib = _hwm_kib(proc.pid)
            peak_kib = _hwm_kib(proc.pid)
            seconds = time.monotonic() - started
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    bare = _bare_python_kib()
    mib = 1024.0
    return [
        Result(
            "rss",
            f"peak RSS after {stored:,} readings",
            peak_kib / mib,
            "MiB",
            "target",
            40.0,
            "≤ 1.0",
        ),
        Result(
            "rss",
            "peak RSS vs agent at start-up",
            peak_kib / mib,
            "MiB",
            "at start-up",
            startup_kib / mib,
            "",
        ),
        Result(
            "rss", "peak RSS vs bare python", peak_kib / mib, "MiB", "bare python", bare / mib, ""
        ),
        Result(
            "rss",
            f"readings/s sustained ({SENSORS} sensors)",
            stored / seconds,
            "/s",
            "requested",
            SENSORS / INTERVAL,
            "",
        ),
    ]
