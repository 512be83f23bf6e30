"""The w1_therm formats, parsed from what the kernel writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lichen_onewire.w1 import (
    W1Bus,
    W1FormatError,
    parse_temperature,
    parse_w1_slave,
    resolution_step,
)

from .fake_w1 import FakeW1, crc8, scratchpad, w1_slave

# verbatim from the kernel's documentation and from a Raspberry Pi
GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
BAD_CRC = "72 01 4b 46 7f ff 0e 10 ff : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
BLANK = "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"


def test_a_good_reading() -> None:
    sample = parse_w1_slave(GOOD)
    assert sample.millidegrees == 23125 and sample.crc_ok
    assert sample.scratchpad == bytes.fromhex("72014b467fff0e1057")
    assert not sample.blank and not sample.power_on_reset


def test_a_failed_crc_power_on_value_and_blank_scratchpad() -> None:
    assert parse_w1_slave(BAD_CRC).crc_ok is False
    assert parse_w1_slave(POWER_ON).power_on_reset
    blank = parse_w1_slave(BLANK)
    assert blank.crc_ok and blank.blank  # passes the CRC, and is still no reading


def test_lower_case_verdicts_and_negative_temperatures() -> None:
    assert parse_w1_slave(GOOD.replace("YES", "yes")).crc_ok
    assert not parse_w1_slave(BAD_CRC.replace("NO", "no")).crc_ok
    cold = parse_w1_slave(w1_slave(-10_125))
    assert cold.millidegrees == -10_125 and cold.crc_ok


@pytest.mark.parametrize(
    "text",
    ["", "\n", "72 01 4b : crc=57 YES\n", GOOD.replace("t=", "x="), GOOD + GOOD, "garbage\nmore\n"],
)
def test_what_is_not_a_reading(text: str) -> None:
    with pytest.raises(W1FormatError):
        parse_w1_slave(text)


def test_the_temperature_attribute() -> None:
    assert parse_temperature("23125\n").millidegrees == 23125
    assert parse_temperature("-55000\n").millidegrees == -55000
    assert parse_temperature("23125\n").scratchpad is None
    for bad in ("", "\n", "23.1\n"):
        with pytest.raises(W1FormatError):
            parse_temperature(bad)


def test_the_fake_kernel_matches_the_real_one() -> None:
    assert crc8(bytes.fromhex("72014b467fff0e10")) == 0x57
    assert w1_slave(pad=bytes.fromhex("72014b467fff0e1057")) == GOOD
    assert w1_slave(85_000) == POWER_ON
    assert scratchpad(23_125)[:2] == bytes.fromhex("7201")


def test_resolution_steps() -> None:
    assert [resolution_step(b) for b in (9, 10, 11, 12, None)] == [0.1, 0.01, 0.001, 0.001, 0.001]


def test_discovery_skips_masters_ghosts_and_other_families(tmp_path: Path) -> None:
    fake = FakeW1(tmp_path)
    for probe in ("28-0316a2795aff", "28-000005e2fdc3", "10-000802b4a1c2", "00-400000000000"):
        fake.add(probe)
    (fake.root / "3a-00000012abcd").mkdir()  # a DS2413 switch, not a thermometer
    bus = W1Bus(fake.root)
    assert bus.discover(["28"]) == ["28-000005e2fdc3", "28-0316a2795aff"]
    assert bus.discover(["28", "10"])[0] == "10-000802b4a1c2"
    assert W1Bus(tmp_path / "nowhere").discover(["28"]) == []


def test_resolution_is_read_and_written(tmp_path: Path) -> None:
    fake = FakeW1(tmp_path)
    fake.add("28-0316a2795aff", resolution=11)
    fake.add("28-000005e2fdc3", resolution=None)  # a kernel before 5.10
    bus = W1Bus(fake.root)
    assert bus.resolution("28-0316a2795aff") == 11
    assert bus.resolution("28-000005e2fdc3") is None
    bus.set_resolution("28-0316a2795aff", 9)
    assert (fake.master / "28-0316a2795aff" / "resolution").read_text() == "9\n"
    bus.set_resolution("28-000005e2fdc3", 10)  # the old way: the bits into w1_slave
    assert (fake.master / "28-000005e2fdc3" / "w1_slave").read_text() == "10\n"


def test_a_probe_with_only_one_of_the_files(tmp_path: Path) -> None:
    fake = FakeW1(tmp_path)
    fake.add("28-0316a2795aff", 19_000, w1_slave_file=False)
    fake.add("28-000005e2fdc3", 18_000, temperature_file=False)
    bus = W1Bus(fake.root)
    assert bus.read("28-0316a2795aff", "w1_slave").millidegrees == 19_000
    assert bus.read("28-000005e2fdc3", "temperature").millidegrees == 18_000
    with pytest.raises(FileNotFoundError):
        bus.read("28-0000000000aa", "w1_slave")
