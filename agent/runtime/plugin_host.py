"""Running one sensor instance in a child process (``isolation = "process"``).

A plugin in a thread shares the agent's interpreter: if it holds the GIL for
seconds — a long call into a C library that does not release it — every other
plugin and the agent itself wait. Such a plugin can run in its own process
instead: the agent starts ``python -m agent.runtime.plugin_host``, hands it the
instance's configuration on stdin, and reads readings back as JSON lines on
stdout. The child exits when the agent closes its stdin (or dies). A child that
crashes, hangs or exits is restarted with the same backoff as a thread.

Lines from the child::

    {"fields": {"temperature": {"unit": "°C", "resolution": 0.01}}}
    {"r": [ts_ms, {"temperature": 21.5}, quality_or_null, urgent]}
    {"error": "OSError: [Errno 5] Input/output error"}

The cost is a second interpreter (~25 MB on a Pi), so threads stay the default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from ..clock import HybridClock
from ..readings import FieldSpec, ReadingCheck, Value

__all__ = ["IsolatedInstance", "main"]


def _fields_json(fields: Mapping[str, FieldSpec]) -> dict[str, Any]:
    return {name: spec.describe() for name, spec in fields.items()}


def _fields_from_json(data: Mapping[str, Any]) -> dict[str, FieldSpec]:
    return {name: FieldSpec(**spec) for name, spec in data.items()}


class IsolatedInstance:
    """The agent's side: one child process running one sensor instance."""

    def __init__(
        self,
        plugin: str,
        config: Any,
        *,
        board: str,
        pin_factory: str | None,
        state_dir: Path,
        home: Path | None = None,
    ) -> None:
        table = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
        table["isolation"] = "thread"  # inside the child it is an ordinary instance
        self._job = json.dumps(
            {
                "plugin": plugin,
                "table": table,
                "board": board,
                "pin_factory": pin_factory,
                "state_dir": str(state_dir),
                "home": str(home) if home else None,
            }
        )
        self.process: subprocess.Popen[str] | None = None
        self.fields: dict[str, FieldSpec] = {}

    def run(
        self,
        deliver: Callable[[int, Mapping[str, Value], str | None, bool], None],
        refuse: Callable[[str], None],
        stopping: threading.Event,
    ) -> None:
        """Start the child and pass its readings on until it exits; raise if it
        failed (the runner then restarts it with backoff)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.runtime.plugin_host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # ^C at the terminal goes to the agent, which stops us
        )
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("no pipes to the plugin process")
        stdin.write(self._job + "\n")
        stdin.flush()
        error = None
        for line in stdout:
            message = json.loads(line)
            if "r" in message:
                ts_ms, values, quality, urgent = message["r"]
                deliver(ts_ms, values, quality, urgent)
            elif "fields" in message:
                self.fields = _fields_from_json(message["fields"])
            elif "refused" in message:
                refuse(message["refused"])
            elif "error" in message:
                error = message["error"]
        code = self.process.wait()
        if stopping.is_set():
            return
        stderr = self.process.stderr.read().strip() if self.process.stderr else ""
        raise RuntimeError(error or f"plugin process exited with {code}: {stderr[-300:]}")

    def stop(self, timeout: float = 3.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            if process.stdin:
                process.stdin.close()  # the child's signal to stop
            process.wait(timeout)
        except (subprocess.TimeoutExpired, OSError):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _child(job: dict[str, Any], out: IO[str]) -> int:
    """The child's side: configure the instance and run it in this process."""
    from ..board import load_board
    from ..plugin_api import SensorContext
    from ..plugins import configure_sensor
    from .hardware import Hardware

    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(message) + "\n")
            out.flush()

    hardware = Hardware(load_board(job["board"]), pin_factory_name=job["pin_factory"])
    configured = configure_sensor(job["plugin"], 0, job["table"], "lichen.toml", hardware)
    stopping = threading.Event()

    def watch_parent() -> None:  # the agent closed our stdin, or died
        sys.stdin.read()
        stopping.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    sensor: Any = None
    sent_fields: Any = None
    check = ReadingCheck({})

    def deliver(ts_ms: int, values: Mapping[str, Value], quality: str | None, urgent: bool) -> None:
        # checked here too: what JSON cannot carry (an object, a key that is not
        # text) must be refused before it is sent, not turned into something else
        nonlocal sent_fields, check
        fields = sensor.fields if sensor is not None else {}
        if check.fields is not fields:
            check = ReadingCheck(fields)
        problem = check.problem(values, quality, ts_ms)
        if problem is not None:
            send({"refused": problem})
            return
        if fields is not sent_fields:
            sent_fields = fields
            send({"fields": _fields_json(fields)})
        send({"r": [ts_ms, dict(values), quality, urgent]})

    context = SensorContext(
        name=configured.name,
        collection=configured.collection,
        clock=HybridClock(),
        deliver=deliver,
        state_dir=Path(job.get("state_dir") or "."),
        stopping=stopping,
        hardware=hardware,
        max_rate=configured.config.max_rate,
        home=Path(job["home"]) if job.get("home") else None,
    )
    try:
        sensor = configured.cls(configured.config, context)
        sensor.open()
        try:
            sensor.run()
        finally:
            sensor.close()
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def main() -> None:
    job = json.loads(sys.stdin.readline())
    sys.exit(_child(job, sys.stdout))


if __name__ == "__main__":
    main()
