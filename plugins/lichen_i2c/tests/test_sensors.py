"""The BME280 and SHT3x plugins in a real agent, on simulated chips on a fake bus:
readings in the log with their units and resolutions, failed samples (a CRC
mismatch, a NACK) counted in status without a restart, a missing or wrong chip
named, configuration mistakes refused, and a process-isolated instance using
the test's own chips through the agent."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.testing import AgentHarness, FakeI2CBus
from lichen_i2c.bme280_math import Calibration, compensate

from .chips import EXAMPLE_H, EXAMPLE_TP, FakeBME280, FakeSHT3x

LOG = "[log]\nflush_interval = 0.05\n"


def config(plugin: str, **keys: object) -> str:
    table = {"name": '"air"', "interval": 0.1, **keys}
    return LOG + f"[[sensors.{plugin}]]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())


def sensor_status(agent: AgentHarness, name: str = "air") -> dict[str, Any]:
    states: list[dict[str, Any]] = agent.status()["sensors"]
    (state,) = [s for s in states if s["name"] == name]
    return state


def test_bme280_readings_are_the_compensated_values(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)
    chip = FakeBME280(adc=(519888, 415148, 30281))
    bus.attach(0x76, chip.device)
    with AgentHarness(config("bme280"), tmp_path, i2c=bus) as agent:
        readings = agent.wait_for_readings("readings/air", 2)
        fields = agent.fields("readings/air")
        state = sensor_status(agent)
    expected = compensate(Calibration(*EXAMPLE_TP, *EXAMPLE_H), 519888, 415148, 30281)
    assert expected.pressure is not None and expected.humidity is not None
    assert readings[0].values == {
        "temperature": 25.08,  # the datasheet's example
        "pressure": round(expected.pressure / 100, 2),  # 1006.53 hPa
        "humidity": round(expected.humidity, 2),
    }
    assert readings[0].values["pressure"] == 1006.53
    assert fields == {
        "temperature": {"unit": "°C", "resolution": 0.01, "device_class": "temperature"},
        "pressure": {"unit": "hPa", "resolution": 0.01, "device_class": "atmospheric_pressure"},
        "humidity": {"unit": "%", "resolution": 0.01, "device_class": "humidity"},
    }
    assert state["restarts"] == 0 and state["sample_errors"] == 0
    # forced mode: one ctrl_meas write (×1 oversampling, forced) per reading
    assert chip.measurements >= 2
    assert bytes([0xF4, 0b001_001_01]) in chip.device.writes
    assert bytes([0xF2, 0b001]) in chip.device.writes


def test_bme280_oversampling_filter_and_a_skipped_quantity(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)
    chip = FakeBME280()
    bus.attach(0x77, chip.device)
    text = config(
        "bme280",
        address="0x77",
        oversampling_temperature=16,
        oversampling_pressure=0,
        oversampling_humidity=4,
        iir_filter=8,
    )
    with AgentHarness(text, tmp_path, i2c=bus) as agent:
        readings = agent.wait_for_readings("readings/air")
        fields = agent.fields("readings/air")
    assert set(readings[0].values) == {"temperature", "humidity"}
    assert set(fields) == {"temperature", "humidity"}
    assert bytes([0xF4, 0b101_000_01]) in chip.device.writes
    assert bytes([0xF2, 0b011]) in chip.device.writes
    assert bytes([0xF5, 0b011 << 2]) in chip.device.writes


def test_sht3x_readings_single_shot_with_the_configured_repeatability(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)
    chip = FakeSHT3x(raw=(0x6666, 0x8000))
    bus.attach(0x45, chip.device)
    text = config("sht3x", address="0x45", repeatability='"medium"')
    with AgentHarness(text, tmp_path, i2c=bus) as agent:
        readings = agent.wait_for_readings("readings/air", 2)
        fields = agent.fields("readings/air")
    assert readings[0].values == {"temperature": 25.0, "humidity": 50.0}  # 24.9998, 50.0008
    assert fields == {
        "temperature": {"unit": "°C", "resolution": 0.01, "device_class": "temperature"},
        "humidity": {"unit": "%", "resolution": 0.01, "device_class": "humidity"},
    }
    assert chip.commands[0] == b"\x30\xa2"  # soft reset at open
    assert set(chip.commands[1:]) == {b"\x24\x0b"}  # single shot, medium, no stretching


def test_a_crc_mismatch_is_a_counted_sample_error_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="lichen")
    bus = FakeI2CBus(1)
    chip = FakeSHT3x()
    bus.attach(0x44, chip.device)
    with AgentHarness(config("sht3x"), tmp_path, i2c=bus) as agent:
        agent.wait_for_readings("readings/air")
        chip.device.corrupt_next(2)
        agent.wait_for(lambda: sensor_status(agent)["sample_errors"] >= 2)
        before = len(agent.readings("readings/air"))
        agent.wait_for_readings("readings/air", before + 2)  # and it carries on
        state = sensor_status(agent)
    assert state["restarts"] == 0 and state["last_error"] is None
    assert state["state"] == "running"
    assert state["last_sample_error"] == (
        "i2c-1 address 0x44: CRC mismatch in the humidity word 0x8000: got 0xA3, expected "
        "0xA2 (noise on the bus? check the pull-ups and the cable length)"
    )
    # no corrupted value reached the log
    assert {r.values["humidity"] for r in agent.readings("readings/air")} == {50.0}
    # one line for the two failures: at most one every 10 s
    lines = [r for r in caplog.records if r.getMessage() == "sample failed"]
    assert len(lines) == 1
    assert lines[0].fields["sensor"] == "air" and lines[0].fields["sample_errors"] == 1  # type: ignore[attr-defined]


def test_a_nack_during_a_sample_is_counted_and_the_next_sample_reads(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)
    chip = FakeBME280()
    bus.attach(0x76, chip.device)
    with AgentHarness(config("bme280"), tmp_path, i2c=bus) as agent:
        agent.wait_for_readings("readings/air")
        chip.device.fail_next(1, "nack")
        agent.wait_for(lambda: sensor_status(agent)["sample_errors"] >= 1)
        chip.device.fail_next(1, "io")
        agent.wait_for(lambda: sensor_status(agent)["sample_errors"] >= 2)
        before = len(agent.readings("readings/air"))
        agent.wait_for_readings("readings/air", before + 1)
        state = sensor_status(agent)
    assert state["restarts"] == 0
    assert state["last_sample_error"] == (
        "i2c-1 address 0x76 register 0xF2: Input/output error (errno 5)"
    )


def test_an_absent_chip_restarts_the_instance_naming_bus_and_address(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)  # nothing at 0x76
    with AgentHarness(config("bme280"), tmp_path, i2c=bus) as agent:
        agent.wait_for(lambda: sensor_status(agent)["last_error"] is not None)
        state = sensor_status(agent)
        assert agent.agent.runners[0].state.state in ("restarting", "starting", "running")
    assert state["last_error"].startswith(
        "I2CNack: i2c-1 address 0x76 register 0xD0: no acknowledgement (NACK)"
    )
    assert "i2cdetect" in state["last_error"]


def test_another_chip_at_the_address_is_named(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)
    bus.attach(0x76, FakeBME280(chip_id=0x58).device)
    with AgentHarness(config("bme280"), tmp_path, i2c=bus) as agent:
        agent.wait_for(lambda: sensor_status(agent)["last_error"] is not None)
        error = sensor_status(agent)["last_error"]
    assert "i2c-1 address 0x76 holds chip id 0x58, a BMP280; a BME280 says 0x60" in error


@pytest.mark.parametrize(
    ("plugin", "keys", "message"),
    [
        ("bme280", {"adress": "0x76"}, 'adress: unknown key. Fix: did you mean "address"?'),
        ("bme280", {"address": "0x44"}, "address = '0x44': is not an address this chip"),
        ("sht3x", {"address": "0x76"}, "Fix: address = 0x44 or 0x45"),
        ("sht3x", {"repeatability": '"ultra"'}, "must be one of 'high', 'medium', 'low'"),
        ("bme280", {"oversampling_pressure": 3}, "must be one of 0, 1, 2, 4, 8, 16"),
        ("bme280", {"bus": 7}, "board 'sim' has no bus 'i2c7'"),
    ],
)
def test_configuration_mistakes_are_clear_errors(
    tmp_path: Path, plugin: str, keys: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        AgentHarness(config(plugin, **keys), tmp_path, i2c=FakeI2CBus(1))
    assert message in str(caught.value)


@pytest.mark.slow
def test_a_process_isolated_instance_uses_the_tests_chips(tmp_path: Path) -> None:
    bus = FakeI2CBus(1)
    chip = FakeSHT3x(raw=(0x6666, 0x8000))
    bus.attach(0x44, chip.device)
    text = config("sht3x", isolation='"process"')
    with AgentHarness(text, tmp_path, i2c=bus) as agent:
        readings = agent.wait_for_readings("readings/air", 2, timeout=60)
        assert agent.agent.runners[0]._isolated is not None  # in a child process
        chip.raw = (0x0000, 0xFFFF)  # changed here, measured there
        agent.wait_for(lambda: agent.values("readings/air")[-1]["temperature"] == -45.0)
        chip.device.corrupt_next(1)
        agent.wait_for(lambda: sensor_status(agent)["sample_errors"] >= 1)
        state = sensor_status(agent)
    assert readings[0].values == {"temperature": 25.0, "humidity": 50.0}
    assert agent.values("readings/air")[-1] == {"temperature": -45.0, "humidity": 100.0}
    assert state["restarts"] == 0
    assert "CRC mismatch in the humidity word 0xFFFF" in state["last_sample_error"]
    assert chip.commands[0] == b"\x30\xa2"
