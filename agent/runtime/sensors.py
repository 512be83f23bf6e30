"""Running sensor instances: one thread each, restarted with backoff on failure.

A sensor's code never runs on the agent's event loop. Each instance has its own
thread, so a plugin that blocks (or hangs for good) delays only itself; one
that raises — anything, ``SystemExit`` included — is restarted after 1 s, 2 s,
4 s … up to 60 s (reset after a run that lasted a minute). Its state — running,
restarting, stuck, last error, readings — is kept in :class:`SensorState` for
``lichen status``.

The watchdog (:func:`watch_sensors`, run by the agent: every second, each
instance's :meth:`SensorRunner.watch`) shows an instance as *stuck* while one
call to its ``open``, ``sample`` or ``close`` has lasted longer than its
``stuck_after``; a thread cannot be interrupted, so it is only shown, but a
process-isolated instance is killed and restarted (as is one whose process
stopped answering).

:meth:`SensorRunner.reconfigure` gives a running instance a new configuration
(a command from the cloud changed its ``interval``): its current life is
stopped as at the agent's stop (``close`` is called) and the next one starts
at once with the new configuration — neither a failure nor a restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backoff import Backoff
from ..clock import HybridClock
from ..hardware import Hardware
from ..logs import event
from ..plugins import ConfiguredSensor
from ..reading_check import ReadingCheck
from ..readings import FieldSpec, Value
from ..sensor_api import Sensor, SensorContext
from .lifecycle import live
from .plugin_host import IsolatedInstance

if TYPE_CHECKING:
    from ..batcher import ReadingBatcher

__all__ = [
    "SensorRunner",
    "SensorState",
    "live",
    "watch_sensors",
]

log = logging.getLogger("lichen.runtime")
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_RUN_S = 60.0
REFUSAL_LOG_EVERY_S = 10.0
WATCH_INTERVAL_S = 1.0


@dataclass
class SensorState:
    name: str
    plugin: str
    collection: str
    state: str = "starting"
    restarts: int = 0
    readings: int = 0
    rate_limited: int = 0
    refused: int = 0
    last_refused: str | None = None
    last_refused_at_ms: int | None = None
    sample_errors: int = 0
    last_sample_error: str | None = None
    last_sample_error_at_ms: int | None = None
    last_reading_ms: int | None = None
    last_error: str | None = None
    last_error_at_ms: int | None = None
    latest: Mapping[str, Any] = field(default_factory=dict)
    stuck_in: str | None = None
    stuck_for_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "collection": self.collection,
            "state": "stuck"
            if self.stuck_in and self.state in ("starting", "running")
            else self.state,
            "stuck_in": self.stuck_in,
            "stuck_for_s": self.stuck_for_s,
            "restarts": self.restarts,
            "readings": self.readings,
            "rate_limited": self.rate_limited,
            "refused": self.refused,
            "last_refused": self.last_refused,
            "last_refused_at_ms": self.last_refused_at_ms,
            "sample_errors": self.sample_errors,
            "last_sample_error": self.last_sample_error,
            "last_sample_error_at_ms": self.last_sample_error_at_ms,
            "last_reading_ms": self.last_reading_ms,
            "last_error": self.last_error,
            "last_error_at_ms": self.last_error_at_ms,
            "latest": dict(self.latest),
        }


class SensorRunner:
    """Owns one configured sensor instance and its thread."""

    def __init__(
        self,
        configured: ConfiguredSensor,
        *,
        clock: HybridClock,
        state_dir: Path,
        batcher: ReadingBatcher,
        hardware: Hardware | None = None,
        home: Path | None = None,
    ) -> None:
        self.configured = configured
        self.state = SensorState(configured.name, configured.plugin, configured.collection)
        self.stopping = threading.Event()
        #: set to end the current life of the instance (the agent stops, or a new
        #: configuration waits in ``_next``)
        self._life = threading.Event()
        self._next: ConfiguredSensor | None = None
        self._lock = threading.Lock()
        self.reconfigured = 0
        self._clock = clock
        self._state_dir = state_dir
        self._batcher = batcher
        self._hardware = hardware
        self._home = home
        self._sensor: Sensor | None = None
        self._isolated: IsolatedInstance | None = None
        self._context: SensorContext | None = None
        self._rate_limited_before = 0  # by contexts of earlier runs
        self._check = ReadingCheck({})
        self._logged: dict[str, float] = {}  # message → monotonic time of its last line
        self._stuck: tuple[str, float] | None = None  # (call, monotonic start) while stuck
        self._thread = threading.Thread(
            target=self._main, name=f"sensor-{configured.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> dict[str, Any]:
        """The instance's state for ``lichen status``."""
        current = self._context.rate_limited if self._context is not None else 0
        self.state.rate_limited = self._rate_limited_before + current
        stuck = self._stuck
        self.state.stuck_in = stuck[0] if stuck else None
        self.state.stuck_for_s = round(time.monotonic() - stuck[1], 1) if stuck else None
        return self.state.as_json()

    def watch(self) -> None:
        """The watchdog's look at this instance: is a call to the plugin taking longer
        than ``stuck_after``? Says so once; kills a process-isolated instance (its
        runner then restarts it)."""
        limit = self.configured.config.stuck_after
        now = time.monotonic()
        found: tuple[str, float] | None = None
        isolated = self._isolated
        if self.configured.config.isolation == "process":
            found = isolated.stuck(limit) if isolated is not None else None
        elif self._context is not None and (busy := self._context.busy) is not None:
            found = busy if now - busy[1] > limit else None
        if self.stopping.is_set():
            found = None
        if found is not None and self._stuck is None:
            call, since = found
            event(
                log,
                "sensor stuck",
                logging.ERROR,
                sensor=self.configured.name,
                call=call,
                for_s=round(now - since, 1),
            )
            if isolated is not None:
                isolated.kill(f"stuck in {call} for {now - since:.0f} s; killed")
        elif found is None and self._stuck is not None:
            event(log, "sensor no longer stuck", sensor=self.configured.name)
        self._stuck = found

    def reconfigure(self, configured: ConfiguredSensor) -> None:
        """Run the instance with ``configured`` from now on: its current life ends
        (``close`` is called) and the next starts at once with it."""
        with self._lock:
            self._next = configured
            life = self._life
        life.set()
        if self._isolated is not None:
            self._isolated.stop()

    def _begin_life(self) -> threading.Event:
        """The stop event of the life about to start, with the new configuration
        if one is waiting."""
        with self._lock:
            if self._next is not None:
                self.configured, self._next = self._next, None
                self.reconfigured += 1
                event(log, "sensor reconfigured", sensor=self.configured.name,
                      interval=self.configured.config.interval)  # fmt: skip
            self._life = threading.Event()
            if self.stopping.is_set():
                self._life.set()
            return self._life

    def _reconfiguring(self) -> bool:
        with self._lock:
            return self._next is not None

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the sensor to stop; True if its thread ended within ``timeout``."""
        self.stopping.set()
        with self._lock:
            self._life.set()
        if self._isolated is not None:
            self._isolated.stop()
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        self.state.state = "hung" if alive else "stopped"
        return not alive

    def _on_reading(
        self, ts_ms: int, values: Mapping[str, Value], quality: str | None, urgent: bool
    ) -> None:
        if self.stopping.is_set():
            return
        # read live: a plugin may replace its fields once it learns them (a device
        # that describes itself); readings after that use the new description
        fields: Mapping[str, FieldSpec]
        if self._isolated is not None:
            fields = self._isolated.fields
        else:
            fields = self._sensor.fields if self._sensor is not None else {}
        check = self._check
        if check.fields is not fields:
            check = self._check = ReadingCheck(fields)
        problem = check.problem(values, quality, ts_ms)
        if problem is not None:
            self.refuse(problem)
            return
        self.state.readings += 1
        self.state.last_reading_ms = ts_ms
        self.state.latest = values
        self._batcher.add(
            self.configured.collection, ts_ms, values, fields, quality=quality, urgent=urgent
        )

    def refuse(self, problem: str) -> None:
        """Count and show a reading that cannot be stored, and log it: the first at
        once, then at most one line every ``REFUSAL_LOG_EVERY_S`` (with the count)."""
        state = self.state
        state.refused += 1
        state.last_refused = problem
        state.last_refused_at_ms = time.time_ns() // 1_000_000
        self._log_limited("reading refused", problem=problem, refused=state.refused)

    def sample_failed(self, problem: str) -> None:
        """Count and show a sample that raised ``SampleError`` (skipped, not a
        restart), and log it as :meth:`refuse` does."""
        state = self.state
        state.sample_errors += 1
        state.last_sample_error = problem
        state.last_sample_error_at_ms = time.time_ns() // 1_000_000
        self._log_limited("sample failed", error=problem, sample_errors=state.sample_errors)

    def _log_limited(self, message: str, **fields: Any) -> None:
        """An error line, at most one every ``REFUSAL_LOG_EVERY_S`` per message."""
        now = time.monotonic()
        last = self._logged.get(message)
        if last is None or now - last >= REFUSAL_LOG_EVERY_S:
            self._logged[message] = now
            event(log, message, logging.ERROR, sensor=self.configured.name, **fields)

    def _run_in_thread(self, life: threading.Event) -> None:
        """One life of the instance in this thread: open, run, close."""
        cfg = self.configured
        context = SensorContext(
            name=cfg.name,
            collection=cfg.collection,
            clock=self._clock,
            deliver=self._on_reading,
            state_dir=self._state_dir / cfg.name,
            stopping=life,
            hardware=self._hardware,
            max_rate=cfg.config.max_rate,
            home=self._home,
            sample_failed=self.sample_failed,
        )
        if self._context is not None:
            self._rate_limited_before += self._context.rate_limited
        self._context = context

        def created(sensor: Sensor) -> None:
            self._sensor = sensor

        def opened() -> None:
            self.state.state = "running"

        live(cfg, context, created=created, opened=opened)

    def _run_in_process(self, life: threading.Event) -> None:
        """One life of the instance in a child process (``isolation = "process"``)."""
        hardware = self._hardware
        self._isolated = IsolatedInstance(
            self.configured.plugin,
            self.configured.config,
            board=hardware.board.name if hardware else "generic",
            pin_factory=hardware.pin_factory_name if hardware else None,
            state_dir=self._state_dir / self.configured.name,
            home=self._home,
            i2c=hardware.given_i2c if hardware else None,
        )
        self.state.state = "running"
        self._isolated.run(self._on_reading, self.refuse, life, self.sample_failed)

    def _main(self) -> None:
        backoff = Backoff(BACKOFF_START_S, BACKOFF_MAX_S, jitter=0.0)  # 1 s, 2 s, 4 s … 60 s
        while not self.stopping.is_set():
            started = time.monotonic()
            life = self._begin_life()
            cfg = self.configured
            try:
                if cfg.config.isolation == "process":
                    self._run_in_process(life)
                else:
                    self._run_in_thread(life)
                if self.stopping.is_set():
                    break
                if self._reconfiguring():
                    continue
                raise RuntimeError("run() returned while the agent was running")
            except BaseException as exc:  # SystemExit too: a plugin never ends its thread
                if self.stopping.is_set():
                    break
                if self._reconfiguring():  # it raised on being stopped: start it anew
                    continue
                self._failed(exc)
            if time.monotonic() - started >= HEALTHY_RUN_S:
                backoff.reset()
            delay = backoff.next()
            self.state.state = "restarting"
            event(log, "sensor restarting", logging.WARNING, sensor=cfg.name, in_s=delay)
            if self.stopping.wait(delay):
                break
            self.state.restarts += 1
        self.state.state = "stopped"

    def _failed(self, exc: BaseException) -> None:
        self.state.last_error = f"{type(exc).__name__}: {exc}"
        self.state.last_error_at_ms = time.time_ns() // 1_000_000
        event(
            log,
            "sensor failed",
            logging.ERROR,
            sensor=self.configured.name,
            error=self.state.last_error,
        )


async def watch_sensors(runners: Sequence[SensorRunner]) -> None:
    """The watchdog: every second, each instance is checked for a call to its
    plugin that takes longer than its ``stuck_after`` (:meth:`SensorRunner.watch`)."""
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        for runner in runners:
            try:
                runner.watch()
            except Exception as exc:  # the watchdog itself must keep going
                event(log, "watchdog failed", logging.ERROR, error=repr(exc))
