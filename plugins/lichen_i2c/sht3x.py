"""The Sensirion SHT3x (SHT30, SHT31, SHT35): temperature and humidity over I²C.

Each sample is one single-shot measurement without clock stretching
(datasheet section 4.3): the command, a wait for the longest conversion time
of the configured repeatability, then the six bytes — a chip still measuring
NACKs the read, and is asked again a few times. Both words carry a CRC-8
(:mod:`.sht3x_math`); a mismatch is a failed sample, counted in status, never
a wrong value in the log. ``open`` soft-resets the chip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import SampleError
from agent.plugin_api import FieldSpec, I2CNack, Value, setting

from .common import I2CSensor, I2CSensorConfig
from .sht3x_math import MEASURE, MEASURE_S, SOFT_RESET, Repeatability, parse_measurement

__all__ = ["SHT3xConfig", "SHT3xSensor"]

#: reads tried again, 2 ms apart, while the chip is still converting (it NACKs)
READ_RETRIES = 5
RESET_S = 0.002


@dataclass(frozen=True, kw_only=True)
class SHT3xConfig(I2CSensorConfig):
    ADDRESSES = (0x44, 0x45)

    address: int = setting(
        0x44, help="0x44 (ADDR to GND, most breakout boards) or 0x45 (ADDR to VDD)"
    )
    repeatability: Repeatability = setting(
        "high",
        help='"high" (0.04 °C / 0.08 %RH noise, 15 ms), "medium" (6 ms) or "low" '
        "(0.15 °C / 0.21 %RH, 4 ms)",
    )


class SHT3xSensor(I2CSensor):
    """Sensirion SHT3x temperature and humidity sensor.

    Wiring (a breakout board with its own pull-ups)::

        VIN / VCC ──── 3V3       (header pin 1)
        GND       ──── GND       (header pin 6)
        SCL       ──── GPIO3 SCL (header pin 5)
        SDA       ──── GPIO2 SDA (header pin 3)

    Example configuration::

        [[sensors.sht3x]]
        name = "greenhouse"
        interval = 30.0
        address = 0x44

    Readings: ``temperature`` (°C), ``humidity`` (%RH).
    """

    Config = SHT3xConfig
    config: SHT3xConfig
    fields: Mapping[str, FieldSpec] = {
        "temperature": FieldSpec(unit="°C", resolution=0.01, device_class="temperature"),
        "humidity": FieldSpec(unit="%", resolution=0.01, device_class="humidity"),
    }

    def open(self) -> None:
        super().open()
        self.bus.write(self.address, SOFT_RESET)
        self.context.sleep(RESET_S)

    def sample(self) -> Mapping[str, Value] | None:
        repeatability = self.config.repeatability
        self.bus.write(self.address, MEASURE[repeatability])
        if not self.context.sleep(MEASURE_S[repeatability]):
            return None
        data = self._read_result()
        try:
            temperature, humidity = parse_measurement(data)
        except ValueError as exc:
            raise SampleError(f"{self.bus.name} address 0x{self.address:02X}: {exc}") from None
        return {"temperature": temperature, "humidity": humidity}

    def _read_result(self) -> bytes:
        for attempt in range(READ_RETRIES + 1):
            try:
                return self.bus.read(self.address, 6)
            except I2CNack:
                if attempt == READ_RETRIES or not self.context.sleep(0.002):
                    raise
        raise AssertionError("unreachable")
