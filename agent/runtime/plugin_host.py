"""Running one sensor instance in a child process (``isolation = "process"``).

A plugin in a thread shares the agent's interpreter: if it holds the GIL for
seconds — a long call into a C library that does not release it — every other
plugin and the agent itself wait. Such a plugin can run in its own process
instead: the agent starts ``python -m agent.runtime.plugin_host FD``, hands it
the instance's configuration on stdin, and reads messages back as JSON lines
on a pipe of their own, the child's file descriptor ``FD``. The child's stdout
and stderr are not the control channel: whatever the plugin prints (``print``,
a C library writing to fd 1) becomes log lines of the agent
(``msg="plugin output"``). The child exits when the agent closes its stdin (or
dies). A child that crashes, exits or hangs is restarted with the same backoff
as a thread.

Messages from the child::

    {"fields": {"temperature": {"unit": "°C", "resolution": 0.01}}}
    {"r": [ts_ms, {"temperature": 21.5}, quality_or_null, urgent]}
    {"refused": "field 'level': nan is not a finite number"}
    {"busy": ["sample()", 0.25]}       every second: the call the plugin is in
    {"busy": null}                     (and for how long), or none
    {"sample_error": "i2c-1 address 0x44: no acknowledgement (NACK) ..."}
    {"error": "OSError: [Errno 5] Input/output error"}

An agent that was given its I²C buses (simulated chips, in tests) relays them
to the child over a socket pair of their own (:mod:`.i2c_relay`); otherwise
the child opens the board's buses itself.

The heartbeat lets the agent's watchdog see a child stuck in ``open()`` or
``sample()`` — or one that stopped answering at all, holding its interpreter —
and kill it (:meth:`IsolatedInstance.stuck`, :meth:`IsolatedInstance.kill`).

The cost is a second interpreter (~25 MB on a Pi), so threads stay the default.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..clock import HybridClock
from ..logs import event
from ..reading_check import ReadingCheck
from ..readings import FieldSpec, Value

if TYPE_CHECKING:
    from ..i2c import I2CBus

__all__ = ["IsolatedInstance", "main"]

HEARTBEAT_S = 1.0
#: silence (no message at all) that makes a child stuck, at least: a few heartbeats
SILENT_MIN_S = 5.0
#: before its first message: starting an interpreter and importing the plugin
STARTUP_GRACE_S = 30.0
_OUTPUT_TAIL = 5  # lines of output kept for the error message of a failed child


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
        i2c: Mapping[int, I2CBus] | None = None,
    ) -> None:
        table = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
        table["isolation"] = "thread"  # inside the child it is an ordinary instance
        self._job: dict[str, Any] = {
            "plugin": plugin,
            "table": table,
            "board": board,
            "pin_factory": pin_factory,
            "state_dir": str(state_dir),
            "home": str(home) if home else None,
        }
        #: the agent's own I²C buses, relayed to the child (None: it opens the board's)
        self._i2c = dict(i2c) if i2c is not None else None
        self.name: str = config.name
        self.process: subprocess.Popen[bytes] | None = None
        self.fields: dict[str, FieldSpec] = {}
        #: why the watchdog killed the child (then :meth:`run` raises it)
        self.killed: str | None = None
        self._started = self._heard = time.monotonic()
        self._answered = False
        self._busy: tuple[str, float] | None = None  # (call, monotonic start), as reported
        self._output: collections.deque[str] = collections.deque(maxlen=_OUTPUT_TAIL)

    def run(
        self,
        deliver: Callable[[int, Mapping[str, Value], str | None, bool], None],
        refuse: Callable[[str], None],
        stopping: threading.Event,
        sample_failed: Callable[[str], None] | None = None,
    ) -> None:
        """Start the child and pass its readings on until it exits; raise if it
        failed or was killed (the runner then restarts it with backoff)."""
        control_fd, job, process = self._spawn()
        self._started = self._heard = time.monotonic()
        output = threading.Thread(
            target=self._forward_output, name=f"output-{self.name}", daemon=True
        )
        output.start()
        stdin = process.stdin
        if stdin is None:
            raise RuntimeError("no pipe to the plugin process")
        stdin.write(json.dumps(job).encode() + b"\n")
        stdin.flush()
        error = None
        with open(control_fd, encoding="utf-8", errors="replace") as control:
            for line in control:
                self._heard, self._answered = time.monotonic(), True
                try:
                    message = json.loads(line)
                except ValueError:
                    self.kill(f"the plugin process wrote garbage to its control pipe: {line!r:.80}")
                    break
                if "r" in message:
                    ts_ms, values, quality, urgent = message["r"]
                    deliver(ts_ms, values, quality, urgent)
                elif "busy" in message:
                    busy = message["busy"]
                    self._busy = None if busy is None else (busy[0], self._heard - busy[1])
                elif "fields" in message:
                    self.fields = _fields_from_json(message["fields"])
                elif "refused" in message:
                    refuse(message["refused"])
                elif "sample_error" in message:
                    if sample_failed is not None:
                        sample_failed(message["sample_error"])
                elif "error" in message:
                    error = message["error"]
        code = process.wait()
        output.join(1.0)
        if self.killed is not None:
            raise RuntimeError(self.killed)
        if stopping.is_set():
            return
        tail = " | ".join(self._output)
        raise RuntimeError(error or f"plugin process exited with {code}: {tail[-300:]}")

    def _spawn(self) -> tuple[int, dict[str, Any], subprocess.Popen[bytes]]:
        """Start the child; the agent's end of the control pipe, and the job to send.
        With I²C buses to relay, the child gets one end of a socket pair too, and a
        thread serves the transfers it sends on the other."""
        control_fd, child_fd = os.pipe()
        job, pass_fds = dict(self._job), [child_fd]
        relay = child_relay = None
        if self._i2c is not None:
            relay, child_relay = socket.socketpair()
            job["i2c"] = {"fd": child_relay.fileno(), "buses": sorted(self._i2c)}
            pass_fds.append(child_relay.fileno())
        try:
            process = self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.runtime.plugin_host", str(child_fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,  # ^C at the terminal goes to the agent, which stops us
            )
        except BaseException:
            os.close(control_fd)
            if relay is not None:
                relay.close()
            raise
        finally:
            os.close(child_fd)
            if child_relay is not None:
                child_relay.close()
        if relay is not None and self._i2c is not None:
            from .i2c_relay import serve

            serve(relay, self._i2c.__getitem__)
        return control_fd, job, process

    def _forward_output(self) -> None:
        """The child's stdout and stderr, line by line, as log lines of the agent."""
        process = self.process
        if process is None or process.stdout is None:
            return
        log = logging.getLogger(f"lichen.sensor.{self.name}")
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._output.append(line)
            event(log, "plugin output", sensor=self.name, line=line)

    def stuck(self, limit: float) -> tuple[str, float] | None:
        """``(call, monotonic start)`` if the child has been in one call for more than
        ``limit`` seconds, or has not said anything for that long (at least
        ``SILENT_MIN_S``; ``STARTUP_GRACE_S`` before its first message)."""
        if self.process is None or self.process.poll() is not None:
            return None
        now = time.monotonic()
        busy, heard = self._busy, self._heard
        if busy is not None and now - busy[1] > limit:
            return busy
        silent_limit = max(limit, SILENT_MIN_S if self._answered else STARTUP_GRACE_S)
        if now - heard > silent_limit:
            return ("the process (no answer)", heard)
        return None

    def kill(self, reason: str) -> None:
        """Kill the child (and anything it started); :meth:`run` raises ``reason``."""
        self.killed = reason
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

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


class _Channel:
    """The child's end of the control pipe: one JSON message a line, from any thread."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._sent_fields: Any = None
        self._check = ReadingCheck({})

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._out.write(json.dumps(message) + "\n")
            self._out.flush()

    def heartbeat(
        self, busy: Callable[[], tuple[str, float] | None], stop: threading.Event
    ) -> None:
        """Say once a second which plugin call is running, and for how long."""
        while True:
            call = busy()
            now = time.monotonic()
            self.send({"busy": None if call is None else [call[0], round(now - call[1], 3)]})
            if stop.wait(HEARTBEAT_S):
                return

    def reading(
        self,
        fields: Mapping[str, FieldSpec],
        ts_ms: int,
        values: Mapping[str, Value],
        quality: str | None,
        urgent: bool,
    ) -> None:
        """Send one reading, checked here too: what JSON cannot carry (an object, a
        key that is not text) is refused before it is sent, not turned into
        something else."""
        if self._check.fields is not fields:
            self._check = ReadingCheck(fields)
        problem = self._check.problem(values, quality, ts_ms)
        if problem is not None:
            self.send({"refused": problem})
            return
        if fields is not self._sent_fields:
            self._sent_fields = fields
            self.send({"fields": _fields_json(fields)})
        self.send({"r": [ts_ms, dict(values), quality, urgent]})


def _child(job: dict[str, Any], out: IO[str]) -> int:
    """The child's side: configure the instance and run it in this process."""
    channel = _Channel(out)
    stopping = threading.Event()
    context: Any = None
    sensor: Any = None
    loading = ("loading the plugin", time.monotonic())
    threading.Thread(
        target=channel.heartbeat,
        args=(lambda: context.busy if context is not None else loading, stopping),
        name="heartbeat",
        daemon=True,
    ).start()

    from ..board import load_board
    from ..hardware import Hardware
    from ..plugins import configure_sensor
    from ..sensor_api import SensorContext
    from .lifecycle import live

    i2c = None
    if job.get("i2c"):
        from .i2c_relay import relayed_buses

        i2c = relayed_buses(job["i2c"]["fd"], job["i2c"]["buses"])
    hardware = Hardware(load_board(job["board"]), pin_factory_name=job["pin_factory"], i2c=i2c)
    configured = configure_sensor(job["plugin"], 0, job["table"], "lichen.toml", hardware)

    def watch_parent() -> None:  # the agent closed our stdin, or died
        sys.stdin.read()
        stopping.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    context = SensorContext(
        name=configured.name,
        collection=configured.collection,
        clock=HybridClock(),
        deliver=lambda ts_ms, values, quality, urgent: channel.reading(
            sensor.fields if sensor is not None else {}, ts_ms, values, quality, urgent
        ),
        state_dir=Path(job.get("state_dir") or "."),
        stopping=stopping,
        hardware=hardware,
        max_rate=configured.config.max_rate,
        home=Path(job["home"]) if job.get("home") else None,
        sample_failed=lambda problem: channel.send({"sample_error": problem}),
    )

    def created(instance: Any) -> None:
        nonlocal sensor
        sensor = instance

    try:
        live(configured, context, created=created, opened=lambda: None)
    except BaseException as exc:  # SystemExit too: reported, then the child ends
        channel.send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def main() -> None:
    """``python -m agent.runtime.plugin_host FD``: the job on stdin, messages to FD."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # prints, promptly
    out = open(int(sys.argv[1]), "w", encoding="utf-8")  # noqa: SIM115  # lives as long as we do
    job = json.loads(sys.stdin.readline())
    sys.exit(_child(job, out))


if __name__ == "__main__":
    main()
