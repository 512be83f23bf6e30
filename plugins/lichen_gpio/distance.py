"""HC-SR04 ultrasonic distance sensors: a distance in metres every ``interval``.

gpiozero's ``DistanceSensor`` pings in a background thread (about every 60 ms)
and keeps the last ``queue_len`` echoes; each reading is their median. A
sensor that stops answering (a loose wire, no 5 V) would otherwise go on
reporting its last good median, so this plugin notes the time of every echo:
readings stop, and after ``echo_timeout`` seconds without one the instance
fails with a message naming both pins (``lichen status`` shows it; the agent
retries with backoff).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from agent.errors import PluginError
from agent.plugin_api import FieldSpec, SensorConfig, SensorContext, Value, setting

from ._base import GpioSensor, require_gpiozero

__all__ = ["DistanceConfig", "DistanceSensor"]

#: the reading's quality flag when nothing was in range (the value is max_distance)
OUT_OF_RANGE = "out of range"


@dataclass(frozen=True, kw_only=True)
class DistanceConfig(SensorConfig):
    echo: str | int = setting(
        help='the GPIO wired (through a 5 V → 3.3 V divider) to ECHO, e.g. echo = "GPIO24"'
    )
    trigger: str | int = setting(help='the GPIO wired to TRIG, e.g. trigger = "GPIO23"')
    max_distance: float = setting(
        1.0,
        min=0.02,
        max=10.0,
        help="metres; farther readings are capped here and flagged (an HC-SR04 reaches "
        "about 4 m), e.g. max_distance = 2.0",
    )
    queue_len: int = setting(
        9, min=1, max=100, help="echoes (about 60 ms apart) whose median is each reading, e.g. 9"
    )
    echo_timeout: float = setting(
        3.0, min=0.2, help="seconds without any echo before the sensor is reported failed, e.g. 3.0"
    )


@functools.cache
def _tracking_sensor_class(gpiozero: ModuleType) -> Any:
    """gpiozero's DistanceSensor, noting when the last echo came back."""

    class TrackingDistanceSensor(gpiozero.DistanceSensor):  # type: ignore[misc,name-defined]
        last_echo: float | None = None

        def _read(self) -> float | None:
            value: float | None = super()._read()
            if value is not None:
                self.last_echo = time.monotonic()
            return value

    return TrackingDistanceSensor


class DistanceSensor(GpioSensor):
    """An HC-SR04 ultrasonic distance sensor (gpiozero's ``DistanceSensor``).

    Wiring — ECHO is a 5 V output: bring it down to 3.3 V with a divider
    (1 kΩ from ECHO to the GPIO, 2 kΩ from the GPIO to ground)::

        VCC  ──── 5V     (header pin 2)
        TRIG ──── GPIO23 (header pin 16)
        ECHO ──1kΩ── GPIO24 (header pin 18) ──2kΩ── GND
        GND  ──── GND    (header pin 20)

    Example configuration (a water tank's level, read every 10 s)::

        [[sensors.gpio_distance]]
        name = "tank"
        echo = "GPIO24"
        trigger = "GPIO23"
        max_distance = 2.0
        interval = 10.0

    Readings: ``{distance: metres}``, the median of the last ``queue_len``
    echoes; a reading at ``max_distance`` (nothing in range) is flagged
    ``quality = "out of range"``. gpiozero's ``pigpio`` pin factory times the
    echo most precisely; others work, a little noisier.
    """

    Config = DistanceConfig
    config: DistanceConfig
    fields: Mapping[str, FieldSpec] = {
        "distance": FieldSpec(unit="m", resolution=0.001, device_class="distance")
    }

    def __init__(self, config: DistanceConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self.device: Any = None
        self._opened = 0.0

    @classmethod
    def claims(cls, config: SensorConfig) -> list[str | int]:
        if not isinstance(config, DistanceConfig):
            raise TypeError(f"{cls.__name__}.claims needs its own Config, not {config!r}")
        return [config.echo, config.trigger]

    def open(self) -> None:
        gpiozero = require_gpiozero()
        cfg = self.config
        self.device = _tracking_sensor_class(gpiozero)(
            echo=self.context.pin(cfg.echo),
            trigger=self.context.pin(cfg.trigger),
            max_distance=cfg.max_distance,
            queue_len=cfg.queue_len,
            partial=True,
            pin_factory=self.context.pin_factory,
        )
        self._opened = time.monotonic()

    def sample(self) -> Mapping[str, Value] | None:
        cfg = self.config
        last_echo: float | None = self.device.last_echo
        silent_since = self._opened if last_echo is None else last_echo
        if time.monotonic() - silent_since > cfg.echo_timeout:
            raise PluginError(
                f"no echo from the HC-SR04 (echo {cfg.echo!r}, trigger {cfg.trigger!r}) for "
                f"{cfg.echo_timeout} s. Fix: check its 5 V supply, the TRIG wire and the "
                "ECHO divider"
            )
        if last_echo is None:
            return None  # no echo yet since start
        distance = float(self.device.distance)
        if distance >= cfg.max_distance:
            self.context.emit({"distance": cfg.max_distance}, quality=OUT_OF_RANGE)
            return None
        return {"distance": distance}

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
