"""sample.toml, uncommented, configures on a Raspberry Pi's header with every GPIO
plugin and no pin clash. (That every key is shown with its real default is
checked for all plugins by tests/test_layout.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.board import load_board
from agent.config import parse_config
from agent.hardware import Hardware
from agent.runtime.configure import configure_sensors

SAMPLE = Path(__file__).resolve().parents[1] / "sample.toml"
#: "# key = value   # comment" and "# [[sensors.x]]", the lines a user uncomments
SETTING = re.compile(r"^# (\[\[sensors\.\w+\]\]|\w+ = .*)$")


def uncommented() -> str:
    return "\n".join(
        m.group(1) if (m := SETTING.match(line)) else line
        for line in SAMPLE.read_text().splitlines()
    )


def test_the_uncommented_sample_configures_on_a_pi_header() -> None:
    config = parse_config(uncommented(), str(SAMPLE))
    hardware = Hardware(load_board("rpi-4"), pin_factory=MockFactory())
    sensors = configure_sensors(config, hardware)
    assert sorted(s.plugin for s in sensors) == [
        "gpio_adc",
        "gpio_button",
        "gpio_distance",
        "gpio_input",
        "gpio_motion",
    ]
    assert set().union(*hardware.claims.values()) == {s.name for s in sensors}
