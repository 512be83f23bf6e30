"""CPU a flood of anonymous handshakes takes from a node, under the default limits.

A real ``lichen run`` process (no sensors, one TCP listener, default ``[mesh]``
admission limits) is flooded from eight loopback hosts (``tests/helpers/flood``:
slow lorises, garbage, complete handshakes under untrusted identities) by a
thread of this process. Its CPU time (user + system, from /proc) over the
window is reported as a share of one core, next to the same node idle, with
the handshakes it admitted and the connections it refused per second. The
design target is ``[mesh] handshake_rate`` (20/s) times the cost of one
handshake, plus what taking and closing the refused connections costs: a
few per cent of a core here, and the reason the limit exists on a Pi.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .common import Result
from .cpu_bench import _measure

LICHEN = Path(sys.executable).with_name("lichen")
CONFIG = """[node]
name = "flooded"

[[transports.tcp]]
name = "lan"
host = "127.0.0.1"
port = {port}
advertise = false
browse = false
"""


def _admission(home: Path) -> dict[str, Any]:
    state = json.loads((home / "run" / "status.json").read_text())
    return dict(state["sync"]["admission"])


def _flood(port: int, stop: threading.Event) -> None:
    from tests.helpers.flood import Flood

    async def run() -> None:
        flood = Flood(port, workers_per_host=4)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await flood.stop()

    asyncio.run(run())


def bench_flood(quick: bool) -> list[Result]:
    from tests.helpers.broker import free_port

    window = 10.0 if quick else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        env = dict(os.environ, LICHEN_HOME=str(home))
        subprocess.run(
            [str(LICHEN), "init", "--board", "generic"], env=env, check=True, capture_output=True
        )
        port = free_port()
        (home / "lichen.toml").write_text(CONFIG.format(port=port))
        agent = subprocess.Popen([str(LICHEN), "run"], env=env, stdout=subprocess.DEVNULL)
        stop = threading.Event()
        flooder = threading.Thread(target=_flood, args=(port, stop), daemon=True)
        try:
            time.sleep(3.0)  # start-up is not the steady state
            idle = _measure(agent.pid, window / 2)
            flooder.start()
            time.sleep(3.0)
            before, started = _admission(home), time.monotonic()
            flooded = _measure(agent.pid, window)
            after, elapsed = _admission(home), time.monotonic() - started
        finally:
            stop.set()
            flooder.join(timeout=30)
            agent.send_signal(signal.SIGINT)
            agent.wait(timeout=60)
    admitted = (after["admitted"] - before["admitted"]) / elapsed
    refused = sum(after[k] - before[k] for k in ("refused_busy", "refused_rate", "refused_host"))
    return [
        Result("flood", "share of one core under a flood", flooded, "", "target", 0.25, "≤ 1.0"),
        Result("flood", "share of one core, idle", idle, "", "target", 0.25, ""),
        Result(
            "flood",
            "handshakes admitted per second",
            admitted,
            "/s",
            "handshake_rate",
            20.0,
            "≤ 1.1",
        ),
        Result(
            "flood",
            "connections refused per second",
            refused / elapsed,
            "/s",
            "admitted",
            admitted,
            "",
        ),
    ]
