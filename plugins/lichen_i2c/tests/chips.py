"""Simulated BME280 and SHT3x chips, built on agent.testing's register-map fake.

The BME280 carries the calibration of the BMP280 datasheet's worked example
(BST-BMP280-DS001, section 3.12: dig_T1 = 27504 … dig_P9 = 6000, shared by the
BME280) plus humidity trimming values, and answers a forced-mode write to
ctrl_meas by putting the raw values of ``adc`` into its data registers (and
its "measuring" bit up for ``busy_polls`` status reads). The SHT3x answers its
single-shot commands with the raw words of ``raw`` and their CRCs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from agent.testing import FakeI2CDevice
from lichen_i2c.sht3x_math import crc8

#: BMP280 datasheet, section 3.12: T1…T3, P1…P9
EXAMPLE_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
EXAMPLE_ADC_T, EXAMPLE_ADC_P = 519888, 415148
#: a humidity calibration (pimoroni/bme280-python tests/calibration.py: H1…H6)
EXAMPLE_H = (75, 376, 0, 286, 50, 30)


def calibration_blocks(tp: tuple[int, ...], h: tuple[int, ...]) -> tuple[bytes, bytes]:
    """The registers 0x88…0xA1 and 0xE1…0xE7 that hold ``tp`` and ``h``."""
    h1, h2, h3, h4, h5, h6 = h
    block_a = struct.pack("<HhhHhhhhhhhh", *tp) + bytes([0, h1])
    e4, e5, e6 = (h4 >> 4) & 0xFF, ((h5 & 0x0F) << 4) | (h4 & 0x0F), (h5 >> 4) & 0xFF
    block_b = struct.pack("<hB", h2, h3) + bytes([e4, e5, e6]) + struct.pack("<b", h6)
    return block_a, block_b


def raw_block(adc_t: int, adc_p: int, adc_h: int) -> bytes:
    """The 8 data registers from 0xF7 holding these raw values."""
    return bytes(
        [
            adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
            adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
            adc_h >> 8, adc_h & 0xFF,
        ]
    )  # fmt: skip


@dataclass
class FakeBME280:
    """A BME280: what ``device`` (the fake chip on the bus) measures next."""

    adc: tuple[int, int, int] = (EXAMPLE_ADC_T, EXAMPLE_ADC_P, 30281)
    chip_id: int = 0x60
    busy_polls: int = 1
    measurements: int = 0
    device: FakeI2CDevice = field(init=False)
    _busy: int = 0

    def __post_init__(self) -> None:
        block_a, block_b = calibration_blocks(EXAMPLE_TP, EXAMPLE_H)
        self.device = FakeI2CDevice(
            {0xD0: self.chip_id, 0xF3: 0x00},
            on_write={0xF4: self._ctrl_meas, 0xE0: self._reset},
            on_read={0xF3: self._status},
        )
        self.device.set_block(0x88, block_a)
        self.device.set_block(0xE1, block_b)

    def _reset(self, device: FakeI2CDevice, register: int, value: int) -> None:
        if value == 0xB6:
            device.registers[0xF4] = device.registers[0xF2] = device.registers[0xF5] = 0

    def _ctrl_meas(self, device: FakeI2CDevice, register: int, value: int) -> None:
        if value & 0b11 != 0b01:
            return  # not forced mode
        self.measurements += 1
        adc_t, adc_p, adc_h = self.adc
        if (value >> 2) & 0b111 == 0:
            adc_p = 0x80000  # skipped: the reset value
        if device.registers.get(0xF2, 0) & 0b111 == 0:
            adc_h = 0x8000
        device.set_block(0xF7, raw_block(adc_t, adc_p, adc_h))
        self._busy = self.busy_polls
        device.registers[0xF4] = value & ~0b11  # back to sleep when done

    def _status(self, device: FakeI2CDevice, register: int) -> None:
        device.registers[0xF3] = 0x08 if self._busy else 0x00
        self._busy = max(0, self._busy - 1)


def sht3x_words(raw_t: int, raw_rh: int) -> bytes:
    """Six bytes of an SHT3x measurement, with correct CRCs."""
    t, rh = raw_t.to_bytes(2, "big"), raw_rh.to_bytes(2, "big")
    return t + bytes([crc8(t)]) + rh + bytes([crc8(rh)])


@dataclass
class FakeSHT3x:
    """An SHT3x that measures ``raw`` (temperature, humidity words) next."""

    raw: tuple[int, int] = (0x6666, 0x8000)
    commands: list[bytes] = field(default_factory=list)
    device: FakeI2CDevice = field(init=False)

    def __post_init__(self) -> None:
        self.device = FakeI2CDevice(on_command=self._command)

    def _command(self, device: FakeI2CDevice, data: bytes) -> None:
        self.commands.append(data)
        if data in (b"\x24\x00", b"\x24\x0b", b"\x24\x16"):
            device.respond(sht3x_words(*self.raw))
