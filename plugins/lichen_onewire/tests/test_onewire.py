"""The 1-Wire sensor in a real agent on a fake sysfs tree in the kernel's formats:
discovery, aliases, CRC failures and retries, the 85 °C power-on value, probes that
disappear and come back, and the temperature attribute. Assertions are on the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.errors import ConfigError
from agent.readings import DecodedReading
from agent.testing import AgentHarness

from .fake_w1 import FakeW1, w1_slave

A, B, C = "28-0316a2795aff", "28-000005e2fdc3", "28-0416b1c3e2ff"
DS18S20 = "10-000802b4a1c2"


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[FakeW1]:
    fake = FakeW1(tmp_path / "fake")
    yield fake
    fake.close()


def config(bus: FakeW1, **keys: object) -> str:
    table = {"name": '"probes"', "interval": 0.05, "root": f'"{bus.root}"', **keys}
    return "[log]\nflush_interval = 0.05\n[[sensors.onewire]]\n" + "".join(
        f"{k} = {v}\n" for k, v in table.items()
    )


def run_until(bus: FakeW1, home: Path, count: int, **keys: object) -> list[DecodedReading]:
    with AgentHarness(config(bus, **keys), home, pin_factory=MockFactory()) as agent:
        agent.wait_for(lambda: len(agent.readings("readings/probes")) >= count)
        assert agent.status()["sensors"][0]["last_error"] is None
    return agent.readings("readings/probes")


def test_every_probe_found_is_a_field_in_celsius(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 23_125)
    bus.add(B, -10_125)
    bus.add(DS18S20, 30_000)  # another family: not read unless asked for
    bus.add("00-400000000000")  # the ghost a failed search leaves
    with AgentHarness(config(bus), tmp_path / "home", pin_factory=MockFactory()) as agent:
        agent.wait_for(lambda: len(agent.readings("readings/probes")) >= 2)
        described = agent.description("readings/probes")
    assert agent.readings("readings/probes")[0].values == {A: 23.125, B: -10.125}
    assert all(r.quality is None for r in agent.readings("readings/probes"))
    assert described is not None
    spec = {"unit": "°C", "resolution": 0.001, "device_class": "temperature"}
    assert described["fields"] == {A: spec, B: spec}


def test_configured_probes_aliases_and_families(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_000)
    bus.add(B, 21_000)
    bus.add(DS18S20, 22_500)
    readings = run_until(
        bus,
        tmp_path / "home",
        2,
        probes=f'["{A}", "{DS18S20}"]',
        names=f'{{ "{A}" = "soil", "{DS18S20}" = "air" }}',
    )
    assert readings[0].values == {"soil": 20.0, "air": 22.5}


def test_a_crc_failure_is_left_out_and_the_others_still_report(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_000)
    bus.add(B)
    bus.write(B, "w1_slave", w1_slave(21_000, crc_ok=False))
    readings = run_until(bus, tmp_path / "home", 3, retries=1, retry_delay=0.0)
    assert all(r.values == {A: 20.0} and r.quality is None for r in readings)


def test_a_crc_failure_can_be_kept_flagged(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_000)
    bus.add(B)
    bus.write(B, "w1_slave", w1_slave(21_000, crc_ok=False))
    readings = run_until(bus, tmp_path / "home", 4, retries=0, on_crc_error='"flag"')
    good = [r for r in readings if r.quality is None]
    flagged = [r for r in readings if r.quality is not None]
    assert good and all(r.values == {A: 20.0} for r in good)
    assert flagged and all(r.values == {B: 21.0} and r.quality == "crc error" for r in flagged)


def test_a_retry_gets_past_a_crc_failure(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A)
    served = bus.serve(A, [w1_slave(19_500, crc_ok=False), w1_slave(19_500)])
    readings = run_until(bus, tmp_path / "home", 2, retries=2, retry_delay=0.0)
    assert readings[0].values == {A: 19.5} and readings[0].quality is None
    assert served.reads >= 3  # the failed read, its retry, then the next reading


def test_an_empty_read_and_a_blank_scratchpad_are_retried(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A)
    blank = "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"
    bus.serve(A, ["", blank, w1_slave(17_250)])
    readings = run_until(bus, tmp_path / "home", 1, retries=2, retry_delay=0.0)
    assert readings[0].values == {A: 17.25}


def test_a_blank_scratchpad_that_persists_is_not_a_zero_reading(
    bus: FakeW1, tmp_path: Path
) -> None:
    bus.add(A, 20_000)
    bus.add(B)
    bus.write(B, "w1_slave", w1_slave(pad=bytes(9)))
    readings = run_until(bus, tmp_path / "home", 2, retries=1, retry_delay=0.0)
    assert all(B not in r.values for r in readings)


def test_the_power_on_value_is_retried_then_flagged(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A)
    bus.serve(A, [w1_slave(85_000), w1_slave(22_000)])  # first conversion after power-up
    bus.add(B, 85_000)  # stays at 85 °C: a probe that keeps resetting
    readings = run_until(bus, tmp_path / "home", 4, retries=1, retry_delay=0.0)
    good = [r for r in readings if r.quality is None]
    flagged = [r for r in readings if r.quality is not None]
    assert good[0].values == {A: 22.0}
    assert flagged and all(r.values == {B: 85.0} and r.quality == "power-on reset" for r in flagged)


def test_a_probe_that_disappears_and_comes_back(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_000)
    bus.add(B, 21_000)
    with AgentHarness(config(bus), tmp_path / "home", pin_factory=MockFactory()) as agent:

        def values() -> list[dict[str, Any]]:
            return [r.values for r in agent.readings("readings/probes")]

        agent.wait_for(lambda: len(values()) >= 1)
        bus.remove(B)
        agent.wait_for(lambda: values()[-1] == {A: 20.0})
        bus.add(B, 21_500)
        agent.wait_for(lambda: values()[-1] == {A: 20.0, B: 21.5})
        status = agent.status()["sensors"][0]
    assert status["restarts"] == 0 and status["last_error"] is None
    seen = values()
    gone = seen.index({A: 20.0})
    assert all(v == {A: 20.0, B: 21.0} for v in seen[:gone])


def test_a_configured_probe_missing_at_start_is_read_once_it_appears(
    bus: FakeW1, tmp_path: Path
) -> None:
    bus.add(A, 20_000)
    with AgentHarness(
        config(bus, probes=f'["{A}", "{C}"]'), tmp_path / "home", pin_factory=MockFactory()
    ) as agent:
        agent.wait_for(lambda: len(agent.readings("readings/probes")) >= 1)
        bus.add(C, 5_000)
        agent.wait_for(lambda: C in agent.readings("readings/probes")[-1].values)
    assert agent.readings("readings/probes")[0].values == {A: 20.0}


def test_the_temperature_attribute(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_000)
    bus.write(A, "temperature", "20437\n")  # differs from w1_slave: shows which was read
    bus.add(B, 21_000, temperature_file=False)  # an older kernel: w1_slave only
    bus.add(C, 22_000)
    bus.write(C, "temperature", "")  # the read failed
    readings = run_until(bus, tmp_path / "home", 2, attribute='"temperature"', retries=0)
    assert readings[0].values == {A: 20.437, B: 21.0}


def test_the_resolution_is_set_and_described(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_250)
    bus.add(B, 20_500, resolution=9)
    with AgentHarness(
        config(bus, resolution_bits=10), tmp_path / "home", pin_factory=MockFactory()
    ) as agent:
        agent.wait_for(lambda: len(agent.readings("readings/probes")) >= 1)
        described = agent.description("readings/probes")
    assert (bus.master / A / "resolution").read_text() == "10\n"
    assert (bus.master / B / "resolution").read_text() == "10\n"
    assert described is not None and described["fields"][A]["resolution"] == 0.01
    assert agent.readings("readings/probes")[0].values == {A: 20.25, B: 20.5}


def test_the_probes_resolution_is_described_when_not_set(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_500, resolution=9)
    with AgentHarness(config(bus), tmp_path / "home", pin_factory=MockFactory()) as agent:
        agent.wait_for(lambda: len(agent.readings("readings/probes")) >= 1)
        described = agent.description("readings/probes")
    assert described is not None and described["fields"][A]["resolution"] == 0.1


def test_no_bus_is_an_error_that_says_how_to_enable_it(tmp_path: Path) -> None:
    text = config(FakeW1(tmp_path / "fake"), root=f'"{tmp_path / "none"}"')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        agent.wait_for(lambda: agent.status()["sensors"][0]["last_error"] is not None)
        error = agent.status()["sensors"][0]["last_error"]
    assert "no 1-Wire bus" in error and "dtoverlay=w1-gpio" in error


def test_the_data_pin_is_claimed(bus: FakeW1, tmp_path: Path) -> None:
    text = config(bus, pin='"W1"') + '[[sensors.gpio_input]]\nname = "door"\npin = 4\n'
    with pytest.raises(ConfigError) as caught:
        AgentHarness(text, tmp_path / "home", pin_factory=MockFactory())
    assert '[[sensors.onewire]] "probes": ' in str(caught.value)
    assert "GPIO4 on board 'sim' is DQ of the 1-Wire bus w1" in str(caught.value)
    assert "'door' uses it as a plain pin" in str(caught.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"probes": '["28-XYZ"]'}, "is not a probe id like 28-0316a2795aff"),
        ({"families": '["29"]'}, '"28" (DS18B20)'),
        ({"names": f'{{ "{A}" = "soil" }}', "probes": f'["{B}"]'}, "is not in probes"),
        ({"names": f'{{ "{A}" = "x", "{B}" = "x" }}'}, "two probes have one name"),
        ({"resolution_bits": 8}, "must be at least 9"),
        ({"on_crc_error": '"ignore"'}, "'skip', 'flag'"),
    ],
)
def test_bad_keys_stop_the_agent(
    bus: FakeW1, tmp_path: Path, keys: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match="onewire") as caught:
        AgentHarness(config(bus, **keys), tmp_path / "home", pin_factory=MockFactory())
    assert message in str(caught.value)


def test_it_runs_in_a_process_of_its_own(bus: FakeW1, tmp_path: Path) -> None:
    bus.add(A, 20_000)
    readings = run_until(
        bus, tmp_path / "home", 2, isolation='"process"', names=f'{{ "{A}" = "soil" }}'
    )
    assert readings[0].values == {"soil": 20.0}
