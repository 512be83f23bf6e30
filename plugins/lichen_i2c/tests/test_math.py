"""The compensation and conversion cores against the manufacturers' worked examples.

Sources:

* BMP280 datasheet (Bosch Sensortec BST-BMP280-DS001), section 3.12, the worked
  example of the temperature and pressure compensation, which the BME280 shares
  (BME280 datasheet BST-BME280-DS002, section 4.2.3 and appendix 8.1): dig_T1 =
  27504, dig_T2 = 26435, dig_T3 = -1000, dig_P1 = 36477 … dig_P9 = 6000, adc_T =
  519888, adc_P = 415148 → t_fine = 128422, T = 25.08 °C, p = 100653.27 Pa (the
  double-precision result; the 64-bit integer routine gives 25767233 / 256 =
  100653.25 Pa).
* Humidity (no worked example in the datasheet): the calibration and the
  double-precision results of another driver's tests, pimoroni/bme280-python
  ``tests/calibration.py`` and ``tests/test_compensation.py`` (adc_T = 529191 →
  24.7894877676 °C, adc_P = 326816 → 1006.61517564 hPa, adc_H = 30281 →
  68.66996648709039 %RH); the integer routines agree within their resolution.
* SHT3x-DIS datasheet (Sensirion), section 4.12: CRC-8 of 0xBEEF is 0x92;
  section 4.13: T = -45 + 175·S/65535, RH = 100·S/65535.
"""

from __future__ import annotations

import pytest

from lichen_i2c.bme280 import measurement_time_s
from lichen_i2c.bme280_math import (
    Calibration,
    compensate,
    compensate_humidity,
    compensate_pressure,
    compensate_temperature,
    parse_calibration,
    parse_raw,
)
from lichen_i2c.sht3x_math import crc8, parse_measurement

from .chips import EXAMPLE_H, EXAMPLE_TP, calibration_blocks, raw_block, sht3x_words

DATASHEET = Calibration(*EXAMPLE_TP)
PIMORONI = Calibration(
    28009, 25654, 50, 39145, -10750, 3024, 5667, -120, -7, 15500, -14600, 6000, *EXAMPLE_H
)


def test_bme280_temperature_is_the_datasheet_example() -> None:
    centi, t_fine = compensate_temperature(DATASHEET, 519888)
    assert (centi, t_fine) == (2508, 128422)  # 25.08 °C


def test_bme280_pressure_is_the_datasheet_example() -> None:
    _, t_fine = compensate_temperature(DATASHEET, 519888)
    q24_8 = compensate_pressure(DATASHEET, 415148, t_fine)
    assert q24_8 == 25767233  # the 64-bit integer routine, to the last bit
    assert q24_8 / 256 == pytest.approx(100653.27, abs=0.02)  # the datasheet's double result


def test_bme280_agrees_with_a_second_drivers_double_precision_results() -> None:
    measured = compensate(PIMORONI, 529191, 326816, 30281)
    assert measured.temperature == pytest.approx(24.7894877676, abs=0.01)
    assert measured.pressure is not None and measured.humidity is not None
    assert measured.pressure / 100 == pytest.approx(1006.61517564, abs=0.005)
    assert measured.humidity == pytest.approx(68.66996648709039, abs=0.01)


def test_bme280_humidity_is_clamped_to_0_and_100() -> None:
    _, t_fine = compensate_temperature(PIMORONI, 529191)
    assert compensate_humidity(PIMORONI, 0, t_fine) == 0
    assert compensate_humidity(PIMORONI, 0xFFFF, t_fine) == 100 * 1024


def test_bme280_calibration_and_data_registers_are_parsed() -> None:
    block_a, block_b = calibration_blocks(EXAMPLE_TP, EXAMPLE_H)
    assert parse_calibration(block_a, block_b) == PIMORONI.__class__(*EXAMPLE_TP, *EXAMPLE_H)
    # dig_H4 and dig_H5 share 0xE5; negative values keep their sign
    block_a, block_b = calibration_blocks(EXAMPLE_TP, (1, -2, 3, -300, -400, -5))
    parsed = parse_calibration(block_a, block_b)
    assert (parsed.H1, parsed.H2, parsed.H3, parsed.H4, parsed.H5, parsed.H6) == (
        1, -2, 3, -300, -400, -5,
    )  # fmt: skip
    # the datasheet example's registers: 0xF7… = 65 5A C0 7E ED 00
    assert raw_block(519888, 415148, 0)[:6] == bytes.fromhex("655ac07eed00")
    assert parse_raw(raw_block(519888, 415148, 30281)) == (519888, 415148, 30281)


def test_bme280_skipped_measurements_are_none() -> None:
    measured = compensate(DATASHEET, 519888, 0x80000, 0x8000)
    assert (measured.temperature, measured.pressure, measured.humidity) == (25.08, None, None)


def test_bme280_measurement_time_is_the_datasheets() -> None:
    # section 9.1: 1.25 + 2.3·T + (2.3·P + 0.575) + (2.3·H + 0.575) ms
    assert measurement_time_s(1, 1, 1) == pytest.approx(0.009300)
    assert measurement_time_s(16, 16, 16) == pytest.approx(0.112800)  # 112.8 ms
    assert measurement_time_s(1, 0, 0) == pytest.approx(0.003550)


def test_sht3x_crc_is_the_datasheet_example() -> None:
    assert crc8(b"\xbe\xef") == 0x92
    assert crc8(b"\x00\x00") == 0x81


def test_sht3x_conversion_is_the_datasheets() -> None:
    assert parse_measurement(sht3x_words(0, 0)) == (-45.0, 0.0)
    assert parse_measurement(sht3x_words(0xFFFF, 0xFFFF)) == (130.0, 100.0)
    t, rh = parse_measurement(sht3x_words(0x6666, 0x8000))
    assert t == pytest.approx(-45 + 175 * 0x6666 / 65535)  # 24.9998 °C
    assert rh == pytest.approx(100 * 0x8000 / 65535)  # 50.0008 %RH


def test_sht3x_crc_mismatch_names_the_word() -> None:
    good = sht3x_words(0x6666, 0x8000)
    with pytest.raises(ValueError, match=r"CRC mismatch in the humidity word 0x8000"):
        parse_measurement(good[:5] + bytes([good[5] ^ 1]))
    with pytest.raises(ValueError, match=r"temperature word 0x6666: got 0x.., expected 0x"):
        parse_measurement(bytes([0x66, 0x66, 0x00]) + good[3:])
