"""The Bosch BME280: temperature, pressure and humidity over I²C.

Each sample is one measurement in *forced mode* (datasheet section 3.3.3):
the sensor sleeps between samples — no self-heating, ~0.1 µA — and a write to
``ctrl_meas`` wakes it for exactly one conversion, after which the data
registers are read in one burst (so the three values belong together) and
compensated with the chip's own calibration (:mod:`.bme280_math`). The
oversampling of each quantity and the IIR filter are keys; the defaults are
the datasheet's "weather monitoring" settings (section 3.5.1: ×1 each, filter
off). ``open`` checks the chip id, resets the chip and reads its calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agent.errors import PluginError, SampleError
from agent.plugin_api import FieldSpec, SensorContext, Value, setting

from .bme280_math import (
    CALIBRATION_A,
    CALIBRATION_A_LENGTH,
    CALIBRATION_B,
    CALIBRATION_B_LENGTH,
    Calibration,
    compensate,
    parse_calibration,
    parse_raw,
)
from .common import I2CSensor, I2CSensorConfig

__all__ = ["BME280Config", "BME280Sensor", "measurement_time_s"]

CHIP_ID = 0xD0
BME280_ID = 0x60
OTHER_CHIPS = {0x56: "a BMP280", 0x57: "a BMP280", 0x58: "a BMP280", 0x61: "a BME680"}
RESET, RESET_WORD = 0xE0, 0xB6
CTRL_HUM, STATUS, CTRL_MEAS, CONFIG, DATA = 0xF2, 0xF3, 0xF4, 0xF5, 0xF7
STATUS_MEASURING, STATUS_IM_UPDATE = 0x08, 0x01
FORCED = 0b01
#: oversampling factor → register code (0: skipped)
OVERSAMPLING = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
FILTER = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}
#: the start-up time after power-on or a soft reset (datasheet table 1)
STARTUP_S = 0.002
#: polls of the status register after the longest measurement time, 2 ms apart
STATUS_POLLS = 10

Oversampling = Literal[1, 2, 4, 8, 16]
OptionalOversampling = Literal[0, 1, 2, 4, 8, 16]


def measurement_time_s(temperature: int, pressure: int, humidity: int) -> float:
    """The longest a forced measurement takes (datasheet section 9.1, t_measure,max),
    for the oversampling factors given (0: skipped)."""
    ms = 1.25 + 2.3 * temperature
    if pressure:
        ms += 2.3 * pressure + 0.575
    if humidity:
        ms += 2.3 * humidity + 0.575
    return ms / 1000


@dataclass(frozen=True, kw_only=True)
class BME280Config(I2CSensorConfig):
    ADDRESSES = (0x76, 0x77)

    address: int = setting(
        0x76, help="0x76 (SDO to GND, most breakout boards) or 0x77 (SDO to VDDIO)"
    )
    oversampling_temperature: Oversampling = setting(
        1, help="1, 2, 4, 8 or 16 conversions averaged (more: less noise, slower)"
    )
    oversampling_pressure: OptionalOversampling = setting(
        1, help="0 (not measured), 1, 2, 4, 8 or 16"
    )
    oversampling_humidity: OptionalOversampling = setting(
        1, help="0 (not measured), 1, 2, 4, 8 or 16"
    )
    iir_filter: Literal[0, 2, 4, 8, 16] = setting(
        0,
        help="IIR filter coefficient over successive readings: 0 (off), 2, 4, 8 or 16 "
        "(smooths pressure against gusts and slammed doors)",
    )


class BME280Sensor(I2CSensor):
    """Bosch BME280 temperature, pressure and humidity sensor.

    Wiring (a breakout board with its own pull-ups and regulator)::

        VIN / VCC ──── 3V3       (header pin 1)
        GND       ──── GND       (header pin 6)
        SCL / SCK ──── GPIO3 SCL (header pin 5)
        SDA / SDI ──── GPIO2 SDA (header pin 3)

    Example configuration::

        [[sensors.bme280]]
        name = "weather"
        interval = 60.0
        address = 0x76

    Readings: ``temperature`` (°C), ``pressure`` (hPa), ``humidity`` (%RH).
    """

    Config = BME280Config
    config: BME280Config

    def __init__(self, config: BME280Config, context: SensorContext) -> None:
        super().__init__(config, context)
        self.calibration: Calibration | None = None
        fields = {"temperature": FieldSpec(unit="°C", resolution=0.01, device_class="temperature")}
        if config.oversampling_pressure:
            fields["pressure"] = FieldSpec(
                unit="hPa", resolution=0.01, device_class="atmospheric_pressure"
            )
        if config.oversampling_humidity:
            fields["humidity"] = FieldSpec(unit="%", resolution=0.01, device_class="humidity")
        self.fields = fields
        self._wait_s = measurement_time_s(
            config.oversampling_temperature,
            config.oversampling_pressure,
            config.oversampling_humidity,
        )
        self._ctrl_meas = (
            OVERSAMPLING[config.oversampling_temperature] << 5
            | OVERSAMPLING[config.oversampling_pressure] << 2
            | FORCED
        )

    def open(self) -> None:
        super().open()
        bus, address = self.bus, self.address
        chip = bus.read_register(address, CHIP_ID)[0]
        if chip != BME280_ID:
            what = OTHER_CHIPS.get(chip, "not a BME280")
            raise PluginError(
                f"{bus.name} address 0x{address:02X} holds chip id 0x{chip:02X}, {what}; a BME280 "
                "says 0x60. Fix: point address at the BME280 (i2cdetect -y BUS), or use the "
                "plugin for that chip"
            )
        bus.write_register(address, RESET, RESET_WORD)
        self.context.sleep(STARTUP_S)  # the chip does not answer while it starts
        self._wait_until_clear(STATUS_IM_UPDATE, "copying its calibration after a reset")
        self.calibration = parse_calibration(
            bus.read_register(address, CALIBRATION_A, CALIBRATION_A_LENGTH),
            bus.read_register(address, CALIBRATION_B, CALIBRATION_B_LENGTH),
        )
        # in sleep mode, where writes to config are always taken
        bus.write_register(address, CONFIG, FILTER[self.config.iir_filter] << 2)

    def sample(self) -> Mapping[str, Value] | None:
        calibration = self.calibration
        if calibration is None:
            raise PluginError("sample() before open()")
        bus, address = self.bus, self.address
        # ctrl_hum takes effect only with the ctrl_meas write that follows it
        bus.write_register(address, CTRL_HUM, OVERSAMPLING[self.config.oversampling_humidity])
        bus.write_register(address, CTRL_MEAS, self._ctrl_meas)
        if not self.context.sleep(self._wait_s):
            return None
        self._wait_until_clear(STATUS_MEASURING, "measuring")
        measured = compensate(calibration, *parse_raw(bus.read_register(address, DATA, 8)))
        values: dict[str, Value] = {"temperature": measured.temperature}
        if "pressure" in self.fields and measured.pressure is not None:
            values["pressure"] = measured.pressure / 100
        if "humidity" in self.fields and measured.humidity is not None:
            values["humidity"] = measured.humidity
        return values

    def _wait_until_clear(self, bit: int, doing: str) -> None:
        for _ in range(STATUS_POLLS):
            if not self.bus.read_register(self.address, STATUS)[0] & bit:
                return
            if not self.context.sleep(0.002):
                return
        raise SampleError(
            f"{self.bus.name} address 0x{self.address:02X}: the BME280 is still {doing} after "
            f"{STATUS_POLLS} polls of its status register"
        )
