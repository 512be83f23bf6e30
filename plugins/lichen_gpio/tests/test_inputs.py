"""Digital inputs, buttons and PIR sensors in a real agent, driven through gpiozero's
MockFactory: each change is an urgent reading in the log."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory

from agent.testing import AgentHarness

LOG = "[log]\nflush_interval = 0.05\n"


def test_a_door_contact_reports_its_state_at_start_and_every_change(tmp_path: Path) -> None:
    factory = MockFactory()
    config = LOG + (
        "[[sensors.gpio_input]]\n"
        'name = "door"\n'
        'pin = "BOARD11"\n'  # GPIO17
        'pull = "up"\n'
        'active = "high"\n'  # normally-closed contact: high means open
        'field_name = "open"\n'
        'device_class = "door"\n'
        "bounce_time = 0.01\n"
    )
    with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
        pin = factory.pin(17)
        agent.wait_for(lambda: agent.values("readings/door") == [{"open": True}])
        assert pin.pull == "up"
        pin.drive_low()  # the door closes the contact
        agent.wait_for(lambda: len(agent.values("readings/door")) == 2)
        pin.drive_high()
        pin.drive_low()
        agent.wait_for(lambda: len(agent.values("readings/door")) == 4)
    assert agent.values("readings/door") == [
        {"open": True},
        {"open": False},
        {"open": True},
        {"open": False},
    ]
    stamps = [r.ts_ms for r in agent.readings("readings/door")]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("keys", "pull", "idle", "active"),
    [
        ("", "down", "low", "high"),  # pulled down: active high by default
        ('pull = "none"\nactive = "low"\n', "floating", "high", "low"),  # driven by its device
    ],
    ids=["pulled-down-active-high", "floating-active-low"],
)
def test_an_input_reports_inactive_at_start_then_its_active_level(
    tmp_path: Path, keys: str, pull: str, idle: str, active: str
) -> None:
    factory = MockFactory()
    pin = factory.pin(5)
    getattr(pin, f"drive_{idle}")()  # the level before the agent starts
    config = LOG + '[[sensors.gpio_input]]\nname = "rain"\npin = 5\n' + keys
    with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
        agent.wait_for(lambda: agent.values("readings/rain") == [{"active": False}])
        assert pin.pull == pull
        getattr(pin, f"drive_{active}")()
        agent.wait_for(lambda: agent.values("readings/rain")[-1:] == [{"active": True}])


def test_a_button_reports_presses_holds_and_releases(tmp_path: Path) -> None:
    factory = MockFactory()
    config = LOG + (
        '[[sensors.gpio_button]]\nname = "reset"\npin = "GPIO17"\n'
        "hold_time = 0.1\nhold_repeat = true\n"
    )
    with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
        pin = factory.pin(17)
        agent.wait_for(lambda: agent.values("readings/reset") == [{"pressed": False}])
        pin.drive_low()  # pressed (pulled up, button to ground)
        agent.wait_for(lambda: sum("held" in v for v in agent.values("readings/reset")) >= 2)
        pin.drive_high()
        agent.wait_for(lambda: agent.values("readings/reset")[-1].get("pressed") is False)
    readings = agent.values("readings/reset")
    assert readings[1] == {"pressed": True}
    holds = [v for v in readings if v.get("held")]
    assert all(v["pressed"] is True for v in holds)
    assert holds[0]["duration"] >= 0.09 and holds[1]["duration"] > holds[0]["duration"]
    assert readings[-1]["duration"] >= holds[-1]["duration"]


def test_a_button_without_hold_time_reports_only_presses_and_releases(tmp_path: Path) -> None:
    factory = MockFactory()
    config = LOG + '[[sensors.gpio_button]]\nname = "bell"\npin = 27\n'
    with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
        agent.wait_for(lambda: len(agent.values("readings/bell")) == 1)
        for _ in range(3):
            factory.pin(27).drive_low()
            factory.pin(27).drive_high()
        agent.wait_for(lambda: len(agent.values("readings/bell")) == 7)
    pressed = [v["pressed"] for v in agent.values("readings/bell")]
    assert pressed == [False, True, False, True, False, True, False]
    assert all("held" not in v for v in agent.values("readings/bell"))


def test_a_pir_sensor_reports_motion_and_its_end(tmp_path: Path) -> None:
    factory = MockFactory()
    config = LOG + '[[sensors.gpio_motion]]\nname = "hall"\npin = "GPIO27"\nsample_rate = 100.0\n'
    with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
        agent.wait_for(lambda: agent.values("readings/hall") == [{"motion": False}])
        factory.pin(27).drive_high()
        agent.wait_for(lambda: agent.values("readings/hall")[-1:] == [{"motion": True}])
        factory.pin(27).drive_low()
        agent.wait_for(lambda: len(agent.values("readings/hall")) == 3)
    assert agent.values("readings/hall") == [
        {"motion": False},
        {"motion": True},
        {"motion": False},
    ]


def test_pins_are_released_when_the_agent_stops(tmp_path: Path) -> None:
    factory = MockFactory()
    config = LOG + '[[sensors.gpio_button]]\nname = "b"\npin = 17\n'
    with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
        agent.wait_for(lambda: len(agent.values("readings/b")) == 1)
        assert factory.pin(17).when_changed is not None
    assert factory.pin(17).when_changed is None
    Button(17, pin_factory=factory).close()  # the pin is free again
