"""Simulated sensors built only on the public plugin API.

Three kinds, chosen with ``kind``:

``climate``  temperature (°C) and relative humidity (%) following a daily cycle
             (warmest mid-afternoon) plus Gaussian noise.
``door``     a door switch: opens and closes at random (Poisson, mean
             ``mean_event_interval`` seconds); each change is an urgent event.
``counter``  a cumulative counter (a rain gauge's bucket tips), Poisson increments
             at ``rate`` per second, reported every ``interval``.

``seed`` makes a run reproducible; ``period`` shortens the "day" for demos.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agent.plugin_api import FieldSpec, Sensor, SensorConfig, SensorContext, Value, setting

__all__ = ["SimConfig", "SimSensor"]

_FIELDS: dict[str, dict[str, FieldSpec]] = {
    "climate": {
        "temperature": FieldSpec(unit="°C", resolution=0.01, device_class="temperature"),
        "humidity": FieldSpec(unit="%", resolution=0.1, device_class="humidity"),
    },
    "door": {"open": FieldSpec(device_class="door")},
    "counter": {"count": FieldSpec(unit="tips", resolution=1)},
}


@dataclass(frozen=True, kw_only=True)
class SimConfig(SensorConfig):
    kind: Literal["climate", "door", "counter"] = setting(
        "climate", help='kind = "climate", "door" or "counter"'
    )
    seed: int | None = setting(None, help="seed for reproducible readings")
    base_temperature: float = setting(18.0, help="daily mean, °C")
    daily_amplitude: float = setting(5.0, min=0.0, help="°C, peak to mean")
    noise: float = setting(0.05, min=0.0, help="standard deviation")
    period: float = setting(86_400.0, min=1.0, help="length of a simulated day, seconds")
    mean_event_interval: float = setting(30.0, min=0.001, help="door: mean seconds between changes")
    rate: float = setting(0.2, min=0.0, help="counter: increments/s")


class SimSensor(Sensor):
    """A simulated sensor. Example configuration::

    [[sensors.sim]]
    name = "climate"
    kind = "climate"
    interval = 1.0
    """

    Config = SimConfig
    config: SimConfig

    def __init__(self, config: SimConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self.fields = _FIELDS[config.kind]
        self.random = random.Random(config.seed)
        self.door_open = False
        self.count = 0

    def sample(self) -> Mapping[str, Value] | None:
        kind = self.config.kind
        if kind == "climate":
            return self._climate()
        if kind == "door":
            self._door()  # emits its own urgent events
            return None
        return self._counter()

    def _climate(self) -> Mapping[str, Value]:
        cfg = self.config
        seconds = self.context.now_ms() / 1000.0
        # warmest at 15:00 of the simulated day, coldest at 03:00
        phase = 2 * math.pi * ((seconds / cfg.period) - 15 / 24)
        temperature = cfg.base_temperature + cfg.daily_amplitude * math.cos(phase)
        temperature += self.random.gauss(0.0, cfg.noise)
        humidity = 60.0 - 2.5 * (temperature - cfg.base_temperature)
        humidity += self.random.gauss(0.0, cfg.noise * 10)
        return {
            "temperature": round(temperature, 2),
            "humidity": round(min(100.0, max(0.0, humidity)), 1),
        }

    def _door(self) -> None:
        chance = 1.0 - math.exp(-self.config.interval / self.config.mean_event_interval)
        if self.random.random() < chance:
            self.door_open = not self.door_open
            self.context.emit({"open": self.door_open}, urgent=True)

    def _counter(self) -> Mapping[str, Value]:
        expected = self.config.rate * self.config.interval
        # Poisson draw by inversion (small means; no numpy needed)
        limit, k, product = math.exp(-expected), 0, self.random.random()
        while product > limit:
            k += 1
            product *= self.random.random()
        self.count += k
        return {"count": self.count}
