"""What the gpiozero-backed sensors share: gpiozero itself, pin options, the event queue.

Two rules hold for every device made here, so tests can drive a ``MockFactory``
and a node never touches a pin it did not claim:

* the pin factory is the runtime's (``self.context.pin_factory``), never
  gpiozero's global default;
* pin names go through the board (``self.context.pin(...)``), and every pin or
  bus is declared in ``Sensor.claims`` so clashes stop the agent at start.

gpiozero calls event callbacks from its own threads. :class:`EventSensor`
queues them and emits from the sensor's own thread, as the plugin API asks,
with the time the event happened.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from agent.errors import PluginError
from agent.plugin_api import Sensor, SensorConfig, SensorContext, Value, setting

__all__ = [
    "Active",
    "EventSensor",
    "GpioSensor",
    "InputConfig",
    "Pull",
    "bounce_field",
    "pull_arguments",
    "require_gpiozero",
]

#: what every GPIO sensor imports when it starts (``lichen doctor`` checks it)
GPIO_REQUIRES = {"gpiozero": "lichen[gpio]"}

Pull = Literal["up", "down", "none"]
Active = Literal["high", "low"]

#: how often an idle event loop looks at ``stopping`` (seconds)
POLL_S = 0.1


def require_gpiozero() -> ModuleType:
    """gpiozero, or a PluginError that says how to install it."""
    try:
        import gpiozero
    except ImportError:
        raise PluginError(
            "this sensor needs gpiozero, which is not installed. Fix: pip install 'lichen[gpio]'"
        ) from None
    module: ModuleType = gpiozero
    return module


def pull_arguments(pull: Pull, active: Active | None) -> tuple[dict[str, Any], Pull | None]:
    """gpiozero's ``pull_up`` / ``active_state`` arguments for ``pull`` and ``active``,
    and the pull to set on the pin after the device is made (or None).

    gpiozero derives the active level from the pull (pulled up → active low) and
    refuses ``active_state`` with a pull. Wiring does not always agree — a
    normally-closed door contact to ground is pulled up *and* active high — so a
    combination gpiozero does not derive is made as a floating input with
    ``active_state``, and the pull is set on the pin afterwards."""
    implied: Active = "low" if pull == "up" else "high"
    if pull == "none":
        return {"pull_up": None, "active_state": (active or "high") == "high"}, None
    if active is None or active == implied:
        return {"pull_up": pull == "up"}, None
    return {"pull_up": None, "active_state": active == "high"}, pull


class GpioSensor(Sensor):
    """A sensor on the board's pins: every instance imports gpiozero."""

    @classmethod
    def requires(cls, config: SensorConfig) -> Mapping[str, str]:
        return dict(GPIO_REQUIRES)


@dataclass(frozen=True, kw_only=True)
class InputConfig(SensorConfig):
    """Keys of every single-pin digital input."""

    pin: str | int = setting(
        help='the GPIO the signal is wired to, e.g. pin = 17, "GPIO17" or "BOARD11"'
    )
    pull: Pull = setting(
        "down",
        help='the internal resistor: "up" (to 3.3 V), "down" (to ground) or "none" '
        "(the device drives the line, or an external resistor pulls it)",
    )
    active: Active | None = setting(
        None,
        help='the level that means "on": "high" or "low"; default: low when pulled up, else high',
    )


def bounce_field() -> Any:
    """The ``bounce_time`` key of the edge-triggered inputs."""
    return setting(
        None,
        min=0.0,
        max=10.0,
        help="seconds to ignore the pin after an edge (debounce), e.g. 0.05",
    )


class EventSensor(GpioSensor):
    """Base of the event sensors: one urgent reading per event, emitted in order.

    A subclass implements :meth:`make_device` (build the gpiozero device),
    :meth:`attach` (set its callbacks, which call :meth:`post`) and :meth:`state`
    (the reading describing the current state, written once at start so the log
    knows it after a reboot).
    """

    config: InputConfig

    def __init__(self, config: InputConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self._events: queue.SimpleQueue[tuple[int, dict[str, Value]]] = queue.SimpleQueue()
        self.device: Any = None

    @classmethod
    def claims(cls, config: SensorConfig) -> list[str | int]:
        if not isinstance(config, InputConfig):
            raise TypeError(f"{cls.__name__}.claims needs its own Config, not {config!r}")
        return [config.pin]

    def make_device(self, gpiozero: ModuleType, pin: int, options: dict[str, Any]) -> Any:
        """Build the device on GPIO ``pin``; ``options`` holds the pull and factory."""
        raise NotImplementedError

    def attach(self) -> None:
        """Set the device's callbacks."""
        raise NotImplementedError

    def state(self) -> Mapping[str, Value]:
        """The current state as a reading."""
        raise NotImplementedError

    def post(self, values: Mapping[str, Value]) -> None:
        """Queue an event now; safe from any thread (gpiozero calls it from its own)."""
        self._events.put((self.context.now_ms(), dict(values)))

    def open(self) -> None:
        gpiozero = require_gpiozero()
        cfg = self.config
        pull_args, late_pull = pull_arguments(cfg.pull, cfg.active)
        options = {**pull_args, "pin_factory": self.context.pin_factory}
        self.device = self.make_device(gpiozero, self.context.pin(cfg.pin), options)
        if late_pull is not None:
            self.device.pin.pull = late_pull
        self.attach()
        self.post(self.state())

    def run(self) -> None:
        stopping = self.context.stopping
        while not stopping.is_set():
            try:
                ts_ms, values = self._events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self.context.emit(values, urgent=True, ts_ms=ts_ms)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
