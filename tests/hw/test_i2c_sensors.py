"""Hardware in the loop: the I²C sensors on a real board.

Marked ``hw``, so deselected by default. On a board with I²C enabled
(``sudo raspi-config nonint do_i2c 0``) and smbus2 installed
(``pip install 'lichen[i2c]'``)::

    .venv/bin/python -m pytest -m hw tests/hw/test_i2c_sensors.py -v

Each test skips, saying why, without ``/dev/i2c-*`` or without its chip. The
chips are looked for at their usual addresses on bus 1; say where otherwise:

``LICHEN_HW_BOARD``   board profile (default ``rpi-4``)
``LICHEN_HW_BME280``  ``"BUS:ADDRESS"`` of a BME280, e.g. ``"1:0x77"``
``LICHEN_HW_SHT3X``   ``"BUS:ADDRESS"`` of an SHT3x, e.g. ``"1:0x45"``
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lichen_i2c.sht3x_math import crc8

from agent.errors import LichenError
from agent.i2c import I2CBus, I2CNack, SMBusI2C
from agent.testing import AgentHarness

pytestmark = [
    pytest.mark.hw,
    pytest.mark.skipif(not glob.glob("/dev/i2c-*"), reason="no /dev/i2c-* (I²C not enabled)"),
]

BOARD = os.environ.get("LICHEN_HW_BOARD", "rpi-4")
LOG = "[log]\nflush_interval = 0.1\n"


def is_bme280(bus: I2CBus, address: int) -> bool:
    return bus.read_register(address, 0xD0) == b"\x60"  # the chip id


def is_sht3x(bus: I2CBus, address: int) -> bool:
    bus.write(address, b"\xf3\x2d")  # read the status register
    time.sleep(0.001)
    status = bus.read(address, 3)
    return crc8(status[:2]) == status[2]


def find_chip(
    variable: str, addresses: tuple[int, ...], probe: Callable[[I2CBus, int], bool]
) -> tuple[int, int]:
    """``(bus, address)`` from ``variable``, or the first of ``addresses`` on bus 1
    where ``probe`` recognises the chip."""
    if value := os.environ.get(variable):
        number, _, where = value.partition(":")
        return int(number), int(where, 0)
    bus = SMBusI2C(1)
    try:
        for address in addresses:
            try:
                if probe(bus, address):
                    return 1, address
            except I2CNack:
                continue
            except LichenError as exc:
                pytest.skip(f"bus 1 cannot be used: {exc}")
    finally:
        bus.close()
    pytest.skip(f"no chip answers at {', '.join(f'0x{a:02X}' for a in addresses)}; set {variable}")


def three_readings(plugin: str, bus: int, address: int, home: Path, extra: str = "") -> list[Any]:
    """Three readings of a real chip through a real agent; no sample failed."""
    config = (
        f'{LOG}[[sensors.{plugin}]]\nname = "chip"\ninterval = 0.5\nbus = {bus}\n'
        f"address = {address}\n{extra}"
    )
    with AgentHarness(config, home, board=BOARD) as agent:
        agent.wait_for_readings("readings/chip", 3, timeout=30)
        state = agent.status()["sensors"][0]
    assert state["restarts"] == 0 and state["sample_errors"] == 0, state
    return agent.values("readings/chip")


def test_bme280_reads_plausible_weather(tmp_path: Path) -> None:
    bus, address = find_chip("LICHEN_HW_BME280", (0x76, 0x77), is_bme280)
    for values in three_readings("bme280", bus, address, tmp_path, "oversampling_pressure = 4\n"):
        assert -40 <= values["temperature"] <= 85
        assert 300 <= values["pressure"] <= 1100  # hPa: the chip's range
        assert 0 <= values["humidity"] <= 100


def test_sht3x_reads_plausible_air(tmp_path: Path) -> None:
    bus, address = find_chip("LICHEN_HW_SHT3X", (0x44, 0x45), is_sht3x)
    for values in three_readings("sht3x", bus, address, tmp_path):
        assert -40 <= values["temperature"] <= 125
        assert 0 <= values["humidity"] <= 100
