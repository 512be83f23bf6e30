"""Pins are checked against the board before any plugin code runs: a clash, a reserved
pin, an unknown name or a bad combination of keys stops the agent with a message that
names the pin, the board and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.errors import ConfigError
from agent.testing import AgentHarness
from lichen_gpio import AnalogSensor, ButtonSensor, DistanceSensor, MotionSensor
from lichen_gpio.adc import AnalogConfig
from lichen_gpio.distance import DistanceConfig
from lichen_gpio.inputs import ButtonConfig, MotionConfig


def refused(config: str, tmp_path: Path, board: str = "sim") -> str:
    with pytest.raises(ConfigError) as caught:
        AgentHarness(config, tmp_path, board=board, pin_factory=MockFactory())
    return str(caught.value)


def test_two_instances_on_one_pin(tmp_path: Path) -> None:
    message = refused(
        '[[sensors.gpio_button]]\nname = "door"\npin = "GPIO17"\n'
        '[[sensors.gpio_input]]\nname = "window"\npin = "BOARD11"\n',  # header pin 11 = GPIO17
        tmp_path,
    )
    assert "GPIO17" in message and "'sim'" in message
    assert "already used by 'door'" in message and "window" in message


def test_a_reserved_pin(tmp_path: Path) -> None:
    message = refused('[[sensors.gpio_motion]]\nname = "pir"\npin = 0\n', tmp_path)
    assert "GPIO0" in message and "reserved on board 'sim'" in message and "ID_SD" in message


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ('"GPIO99"', "GPIO99 does not exist on board 'sim'"),
        ('"BOARD4"', "Cannot resolve pin name 'BOARD4' for board 'sim'"),  # a 5 V pin
        ('"SDAA"', "did you mean SDA"),
    ],
)
def test_an_unknown_pin(tmp_path: Path, pin: str, reason: str) -> None:
    message = refused(f'[[sensors.gpio_input]]\nname = "x"\npin = {pin}\n', tmp_path)
    assert reason in message and "gpio_input" in message


def test_a_board_without_gpio(tmp_path: Path) -> None:
    message = refused('[[sensors.gpio_button]]\nname = "b"\npin = 17\n', tmp_path, "generic")
    assert "board 'generic' has no GPIO pins" in message


def test_an_adc_on_hardware_spi_claims_its_chip_select(tmp_path: Path) -> None:
    message = refused(
        '[[sensors.gpio_adc]]\nname = "soil"\n[[sensors.gpio_button]]\nname = "b"\npin = "CE0"\n',
        tmp_path,
    )
    assert "GPIO8" in message and "already used by 'soil'" in message


def test_a_plain_pin_on_the_spi_bus_is_refused(tmp_path: Path) -> None:
    message = refused(
        '[[sensors.gpio_button]]\nname = "b"\npin = "SCLK"\n[[sensors.gpio_adc]]\nname = "soil"\n',
        tmp_path,
    )
    # the ADC is configured first (plugins in name order): the button then finds SCLK taken
    assert "pin 'SCLK' (GPIO11)" in message and "SCLK of the SPI bus spi0" in message
    assert (
        "used by sensor 'soil'" in message
        and '[[sensors.gpio_button]] "b": pin' in message
        and "Fix:" in message
    )


def test_two_adcs_share_the_bus_on_their_own_chip_selects(tmp_path: Path) -> None:
    from agent.board import load_board
    from agent.config import parse_config
    from agent.hardware import Hardware
    from agent.runtime.configure import configure_sensors

    adc = '[[sensors.gpio_adc]]\nname = "{}"\ndevice = {}\n'
    config = parse_config(adc.format("a", 0) + adc.format("b", 1))
    hardware = Hardware(load_board("sim"))
    assert [s.name for s in configure_sensors(config, hardware)] == ["a", "b"]
    assert (
        hardware.claims[11] == {"a", "b"}
        and hardware.claims[8] == {"a"}
        and hardware.claims[7] == {"b"}
    )


def test_a_distance_sensor_claims_both_pins(tmp_path: Path) -> None:
    message = refused(
        '[[sensors.gpio_distance]]\nname = "tank"\necho = 24\ntrigger = 23\n'
        '[[sensors.gpio_motion]]\nname = "pir"\npin = "GPIO23"\n',
        tmp_path,
    )
    assert "GPIO23" in message and "already used by 'tank'" in message


def test_claims_name_every_pin_and_bus() -> None:
    assert ButtonSensor.claims(ButtonConfig(name="b", pin="GPIO5")) == ["GPIO5"]
    assert MotionSensor.claims(MotionConfig(name="m", pin=6)) == [6]
    assert DistanceSensor.claims(DistanceConfig(name="d", echo=24, trigger=23)) == [24, 23]
    assert AnalogSensor.claims(AnalogConfig(name="a")) == ["bus:spi0", "CE0"]
    assert AnalogSensor.claims(AnalogConfig(name="a", port=1, device=1)) == ["bus:spi1", "CE1"]
    soft = AnalogConfig(name="a", clock_pin=21, mosi_pin=20, miso_pin=19, select_pin=16)
    assert AnalogSensor.claims(soft) == [21, 20, 19, 16]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            'chip = "MCP3004"\nchannels = [4]',
            [
                '[[sensors.gpio_adc]] "soil" channels',
                "the MCP3004 has channels 0 to 3",
                "Fix: [0, 1, 2, 3] or fewer",
            ],
        ),
        ("channels = [1, 1]", ['[[sensors.gpio_adc]] "soil" channels', "listed twice"]),
        (
            'channels = [0, 1]\nnames = ["a"]',
            ['[[sensors.gpio_adc]] "soil" names', "1 entries for 2 channels"],
        ),
        (
            "channels = [0, 1]\nscale = [1.0, 2.0, 3.0]",
            ['[[sensors.gpio_adc]] "soil" scale', "or one for all"],
        ),
        ("scale = [0.0]", ['[[sensors.gpio_adc]] "soil" scale', "a scale of 0"]),
        (
            "clock_pin = 21",
            ['[[sensors.gpio_adc]] "soil" clock_pin', "Fix: set clock_pin, mosi_pin, miso_pin"],
        ),
        ("port = 1", ["soil", "board 'sim' has no bus 'spi1'"]),
    ],
)
def test_adc_keys_that_do_not_fit_together(tmp_path: Path, table: str, expected: list[str]) -> None:
    message = refused(f'[[sensors.gpio_adc]]\nname = "soil"\n{table}\n', tmp_path)
    for part in expected:
        assert part in message


def test_hold_repeat_needs_a_hold_time(tmp_path: Path) -> None:
    message = refused(
        '[[sensors.gpio_button]]\nname = "b"\npin = 17\nhold_repeat = true\n', tmp_path
    )
    assert message.endswith(
        '[[sensors.gpio_button]] "b" hold_repeat: hold_repeat = true needs a hold_time. '
        "Fix: set hold_time, e.g. hold_time = 2.0"
    ), message


def test_keys_are_checked_with_their_help(tmp_path: Path) -> None:
    message = refused('[[sensors.gpio_input]]\nname = "x"\npin = 17\npull = "sideways"\n', tmp_path)
    assert "pull" in message and "'up', 'down', 'none'" in message
    message = refused(
        '[[sensors.gpio_input]]\nname = "x"\npin = 17\nfield_name = "a b"\n', tmp_path
    )
    assert "field_name" in message and "letters, digits or underscores" in message
    message = refused('[[sensors.gpio_distance]]\nname = "d"\necho = 24\n', tmp_path)
    assert "trigger" in message and "is required" in message and "TRIG" in message
