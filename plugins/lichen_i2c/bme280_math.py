"""The Bosch BME280's calibration and compensation: bytes in, values out, no I/O.

The formulas are the datasheet's fixed-point ones (BME280 datasheet,
BST-BME280-DS002, section 4.2.3 "Compensation formulas": 32-bit integer
temperature and humidity, 64-bit integer pressure), which Bosch recommends
for accuracy; Python's integers do not overflow, and where C divides
signed integers (truncation towards zero) :func:`_c_div` does the same, so
the results are the reference driver's to the last bit. Temperature and
pressure are shared with the BMP280, whose datasheet (BST-BMP280-DS001,
section 3.12) works one example through with numbers; the tests use it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "CALIBRATION_A",
    "CALIBRATION_A_LENGTH",
    "CALIBRATION_B",
    "CALIBRATION_B_LENGTH",
    "Calibration",
    "Compensated",
    "compensate",
    "compensate_humidity",
    "compensate_pressure",
    "compensate_temperature",
    "parse_calibration",
    "parse_raw",
]

#: calib00…calib25: dig_T1…dig_P9 (0x88…0x9F), a reserved byte, dig_H1 (0xA1)
CALIBRATION_A = 0x88
CALIBRATION_A_LENGTH = 26
#: calib26…calib32: dig_H2…dig_H6 (0xE1…0xE7)
CALIBRATION_B = 0xE1
CALIBRATION_B_LENGTH = 7
#: what the data registers hold for a measurement that was skipped (oversampling 0)
SKIPPED_20_BIT = 0x80000
SKIPPED_16_BIT = 0x8000


@dataclass(frozen=True)
class Calibration:
    """The trimming parameters each chip is programmed with at the factory."""

    T1: int
    T2: int
    T3: int
    P1: int
    P2: int
    P3: int
    P4: int
    P5: int
    P6: int
    P7: int
    P8: int
    P9: int
    H1: int = 0
    H2: int = 0
    H3: int = 0
    H4: int = 0
    H5: int = 0
    H6: int = 0


@dataclass(frozen=True)
class Compensated:
    """One measurement: °C, Pa and %RH, each None if it was skipped."""

    temperature: float
    pressure: float | None
    humidity: float | None


def parse_calibration(block_a: bytes, block_b: bytes) -> Calibration:
    """The calibration from the two register blocks (datasheet table 16): 26 bytes
    from 0x88 and 7 from 0xE1. dig_H4 and dig_H5 are 12-bit values sharing 0xE5."""
    if len(block_a) != CALIBRATION_A_LENGTH or len(block_b) != CALIBRATION_B_LENGTH:
        raise ValueError(
            f"calibration blocks of {CALIBRATION_A_LENGTH} and {CALIBRATION_B_LENGTH} bytes "
            f"expected, got {len(block_a)} and {len(block_b)}"
        )
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack("<HhhHhhhhhhhh", block_a[:24])
    h1 = block_a[25]
    h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", block_b)
    h4 = (e4 << 4) | (e5 & 0x0F)
    h5 = (e6 << 4) | (e5 >> 4)
    return Calibration(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)


def parse_raw(data: bytes) -> tuple[int, int, int]:
    """``(adc_T, adc_P, adc_H)`` from the 8 data bytes read from 0xF7 (press_msb …
    hum_lsb): pressure and temperature are 20 bits, humidity 16."""
    if len(data) != 8:
        raise ValueError(f"8 data bytes expected from 0xF7, got {len(data)}")
    adc_p = (data[0] << 12) | (data[1] << 4) | (data[2] >> 4)
    adc_t = (data[3] << 12) | (data[4] << 4) | (data[5] >> 4)
    adc_h = (data[6] << 8) | data[7]
    return adc_t, adc_p, adc_h


def _c_div(a: int, b: int) -> int:
    """C's signed integer division: truncates towards zero (Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def compensate_temperature(cal: Calibration, adc_t: int) -> tuple[int, int]:
    """``(T, t_fine)``: T in 0.01 °C (``5123`` is 51.23 °C); t_fine feeds the others."""
    var1 = (((adc_t >> 3) - (cal.T1 << 1)) * cal.T2) >> 11
    var2 = (((((adc_t >> 4) - cal.T1) * ((adc_t >> 4) - cal.T1)) >> 12) * cal.T3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_pressure(cal: Calibration, adc_p: int, t_fine: int) -> int:
    """Pressure in Pa as Q24.8 (``24674867`` is 24674867/256 = 96386.2 Pa); 0 when
    the calibration would divide by zero (the datasheet's guard)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.P6
    var2 = var2 + ((var1 * cal.P5) << 17)
    var2 = var2 + (cal.P4 << 35)
    var1 = ((var1 * var1 * cal.P3) >> 8) + ((var1 * cal.P2) << 12)
    var1 = (((1 << 47) + var1) * cal.P1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _c_div(((p << 31) - var2) * 3125, var1)
    var1 = (cal.P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.P7 << 4)


def compensate_humidity(cal: Calibration, adc_h: int, t_fine: int) -> int:
    """Relative humidity in %RH as Q22.10 (``47445`` is 47445/1024 = 46.333 %RH),
    clamped to 0…100 %RH as the datasheet's code does."""
    v = t_fine - 76800
    v = ((((adc_h << 14) - (cal.H4 << 20) - (cal.H5 * v)) + 16384) >> 15) * (
        (
            (((((v * cal.H6) >> 10) * (((v * cal.H3) >> 11) + 32768)) >> 10) + 2097152) * cal.H2
            + 8192
        )
        >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.H1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


def compensate(cal: Calibration, adc_t: int, adc_p: int, adc_h: int) -> Compensated:
    """One measurement in °C, Pa and %RH; pressure or humidity None where the chip
    skipped it (its register holds the reset value)."""
    t_centi, t_fine = compensate_temperature(cal, adc_t)
    pressure = None
    if adc_p != SKIPPED_20_BIT:
        pressure = compensate_pressure(cal, adc_p, t_fine) / 256
    humidity = None
    if adc_h != SKIPPED_16_BIT:
        humidity = compensate_humidity(cal, adc_h, t_fine) / 1024
    return Compensated(t_centi / 100, pressure, humidity)
