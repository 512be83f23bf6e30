"""The sensor plugin interface: :class:`Sensor`, its :class:`SensorConfig`, and the
:class:`SensorContext` the agent gives each instance.

Plugin authors import these names from :mod:`agent.plugin_api` (the module
docstring there shows a complete plugin); the core — plugin discovery and the
runtime — imports them from here, below the command-line layer that
:mod:`agent.plugin_api` also re-exports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .clock import HybridClock
from .errors import PluginError, SampleError
from .extras import Requirements
from .readings import FieldSpec, Value
from .schema import setting

if TYPE_CHECKING:
    from .board import BoardProfile
    from .hardware import Hardware
    from .i2c import I2CBus

__all__ = ["Sensor", "SensorConfig", "SensorContext"]

_SLEEP_SLICE_S = 0.5


@dataclass(frozen=True, kw_only=True)
class SensorConfig:
    """Keys every sensor instance accepts; plugins subclass it to add their own."""

    name: str = setting(
        help='the instance name, e.g. name = "greenhouse"; readings go to '
        'collection "readings/<name>"'
    )
    interval: float = setting(1.0, min=0.001, help="seconds between samples, e.g. 1.0")
    collection: str | None = setting(None, help='override the collection, e.g. "events/door"')
    isolation: Literal["thread", "process"] = setting(
        "thread",
        help='isolation = "thread" (default) or "process" for a plugin that may hold '
        "the interpreter for seconds (a blocking C library); a process costs ~25 MB",
    )
    max_rate: float = setting(
        1000.0,
        min=0.001,
        help="most readings per second kept from this instance (a flood beyond is "
        "dropped and counted), e.g. max_rate = 1000",
    )
    stuck_after: float = setting(
        60.0,
        min=1.0,
        help="seconds one call to open() or sample() may take before the instance is "
        'shown as stuck (with isolation = "process": killed and restarted), e.g. 60.0',
    )


class SensorContext:
    """What the agent gives a sensor instance. Safe to use from the sensor's thread."""

    def __init__(
        self,
        *,
        name: str,
        collection: str,
        clock: HybridClock,
        deliver: Callable[[int, Mapping[str, Value], str | None, bool], None],
        state_dir: Path,
        stopping: threading.Event | None = None,
        hardware: Hardware | None = None,
        max_rate: float = 1000.0,
        resources: Mapping[str, Any] | None = None,
        home: Path | None = None,
        sample_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.collection = collection
        self.clock = clock
        self.state_dir = state_dir
        #: the node's home directory (None in bare tests)
        self.home = home
        self.stopping = stopping or threading.Event()
        #: other runtime-provided objects, by name
        self.resources: Mapping[str, Any] = resources or {}
        self.log = logging.getLogger(f"lichen.sensor.{name}")
        self._deliver = deliver
        self._hardware = hardware
        self._sample_failed = sample_failed
        self.emitted = 0
        #: samples that raised :class:`~agent.errors.SampleError` (skipped, counted)
        self.sample_errors = 0
        #: ``(call, time.monotonic() when it began)`` while the runtime is inside the
        #: plugin's ``open``, ``sample`` or ``close``; the watchdog reads it
        self.busy: tuple[str, float] | None = None
        #: readings refused because the instance emitted faster than ``max_rate``
        self.rate_limited = 0
        self._rate = max_rate
        self._tokens = max(max_rate, 10.0)
        self._burst = self._tokens
        self._refilled = time.monotonic()

    @property
    def board(self) -> BoardProfile | None:
        """The board profile the agent runs on (pins, buses, radios), if known.
        ``context.board.gpio`` is empty on boards without GPIO."""
        return self._hardware.board if self._hardware is not None else None

    @property
    def pin_factory(self) -> Any:
        """The gpiozero pin factory the runtime chose (``[gpio] pin_factory``; tests
        give gpiozero's ``MockFactory``). Pass it to every device:
        ``Button(pin, pin_factory=self.context.pin_factory)``."""
        return self._need_hardware().pin_factory()

    def pin(self, pin: str | int) -> int:
        """The GPIO number of ``pin`` (``17``, ``"GPIO17"``, ``"BOARD11"``, ``"SDA"``) on
        this board; ValueError naming the pin, the board and the reason."""
        return self._need_hardware().resolve(pin)

    def i2c(self, bus: int) -> I2CBus:
        """I²C bus ``bus`` (``1`` is ``/dev/i2c-1``, the header's SDA/SCL on a Pi):
        ``read``, ``write``, ``read_register``, ``write_register`` (see
        :mod:`agent.i2c`). Claim it in ``claims`` as ``"bus:i2c1"``."""
        return self._need_hardware().i2c_bus(bus)

    def sample_failed(self, error: SampleError | str) -> None:
        """Count one failed sample (what the default ``run`` does with a
        :class:`~agent.errors.SampleError` from ``sample``); shown in status."""
        self.sample_errors += 1
        if self._sample_failed is not None:
            self._sample_failed(str(error))

    def _need_hardware(self) -> Hardware:
        if self._hardware is None:
            raise PluginError(f"sensor {self.name!r} needs board hardware, and none was given")
        return self._hardware

    def now_ms(self) -> int:
        """The node clock in milliseconds (never runs backwards)."""
        return self.clock.physical_now()

    def emit(
        self,
        values: Mapping[str, Value] | Value,
        *,
        quality: str | None = None,
        urgent: bool = False,
        ts_ms: int | None = None,
    ) -> None:
        """Record one reading now (or at ``ts_ms``). A bare value becomes field ``value``.

        ``urgent=True`` writes it to the log at once instead of at the next flush
        (alarms, door events)."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            self.rate_limited += 1
            return
        self._tokens -= 1.0
        mapping: Mapping[str, Value]
        if type(values) is dict or isinstance(values, Mapping):  # dict first: cheaper
            mapping = values
        else:
            mapping = {"value": values}
        stamp = self.now_ms() if ts_ms is None else ts_ms
        self._deliver(stamp, mapping, quality, urgent)
        self.emitted += 1

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the agent is stopping; return False if it is (noticed
        within half a second). ``time.sleep`` in slices costs half the CPU of
        waiting on an event — it adds up with dozens of sensors at 10 Hz."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, _SLEEP_SLICE_S))
        return False


class Sensor(Requirements):
    """Base class of sensor plugins. See the module docstring for a complete example."""

    #: the configuration dataclass (a :class:`SensorConfig` subclass)
    Config: ClassVar[type[SensorConfig]] = SensorConfig
    #: the fields this sensor emits. An instance may replace it — in ``__init__``
    #: when they depend on the configuration, or later, when it learns them from
    #: the device; readings emitted afterwards are described by the new value.
    fields: Mapping[str, FieldSpec] = {}

    def __init__(self, config: SensorConfig, context: SensorContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def claims(cls, config: SensorConfig) -> Sequence[str | int]:
        """The pins (``17``, ``"GPIO17"``) and buses (``"bus:spi0"``) an instance with
        ``config`` will use. The agent checks them against the board at start — a
        reserved, unknown or doubly used pin stops it with a message naming both
        instances — before any plugin code runs."""
        return ()

    def open(self) -> None:
        """Acquire the hardware. Called in the sensor's thread before ``run``."""

    def sample(self) -> Mapping[str, Value] | Value | None:
        """Return one reading (a mapping of field → value, or a bare value), or None
        to skip this slot. Called every ``interval`` seconds by the default ``run``."""
        raise NotImplementedError(f"{type(self).__name__} implements neither sample() nor run()")

    def run(self) -> None:
        """Sample every ``interval`` seconds on a drift-free schedule until stopping.

        A slot missed because ``sample`` was slow is skipped, not made up; one whose
        ``sample`` raised :class:`~agent.errors.SampleError` is counted and skipped."""
        ctx, interval = self.context, self.config.interval
        next_slot = time.monotonic()
        while not ctx.stopping.is_set():
            started = ctx.now_ms()
            ctx.busy = ("sample()", time.monotonic())
            try:
                result = self.sample()
            except SampleError as exc:
                ctx.sample_failed(exc)
                result = None
            finally:
                ctx.busy = None
            if result is not None:
                ctx.emit(result, ts_ms=started)
            now = time.monotonic()
            next_slot += interval
            if next_slot < now:  # fell behind: skip to the next future slot
                next_slot += ((now - next_slot) // interval + 1) * interval
            if not ctx.sleep(next_slot - now):
                return

    def close(self) -> None:
        """Release the hardware. Called after ``run`` returns or raises."""
