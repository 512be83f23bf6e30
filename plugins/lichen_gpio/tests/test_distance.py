"""The HC-SR04 in a real agent, on gpiozero's MockTriggerPin: the trigger pin makes
the echo pin answer with a pulse as long as the sound's round trip."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockTriggerPin

from agent.testing import AgentHarness

SPEED_OF_SOUND = 343.26  # m/s, as gpiozero computes
LOG = "[log]\nflush_interval = 0.05\n"


@pytest.fixture(autouse=True)
def _quiet_gpiozero() -> Iterator[None]:
    # gpiozero suggests pigpio for precise timing, and warns per missed echo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def sonar(factory: MockFactory, *, echo: int = 24, trigger: int = 23, metres: float) -> None:
    """An HC-SR04 facing a wall ``metres`` away (echo high for the round trip)."""
    echo_pin = factory.pin(echo)
    factory.pin(
        trigger, pin_class=MockTriggerPin, echo_pin=echo_pin, echo_time=2 * metres / SPEED_OF_SOUND
    )


def config(**extra: object) -> str:
    keys = {"name": '"tank"', "echo": '"GPIO24"', "trigger": '"GPIO23"', "interval": 0.05}
    keys.update({k: str(v) for k, v in extra.items()})
    return LOG + "[[sensors.gpio_distance]]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def test_distance_in_metres(tmp_path: Path) -> None:
    factory = MockFactory()
    sonar(factory, metres=0.7)
    text = config(max_distance=4.0, queue_len=5)
    with AgentHarness(text, tmp_path, pin_factory=factory) as agent:

        def distances() -> list[float]:
            return [
                d
                for r in agent.readings("readings/tank")
                if r.quality is None and isinstance(d := r.values["distance"], float)
            ]

        # The mock echo lasts its round trip plus however late its thread wakes (a
        # busy machine adds milliseconds, ~0.17 m each): never shorter, and the best
        # readings come close to it — on a loaded machine only after more tries,
        # so readings are taken until one is (a unit or factor-of-two error never is)
        def close_enough() -> bool:
            found = distances()
            return len(found) >= 10 and min(found) < 1.0

        agent.wait_for(close_enough, timeout=60)
    assert min(distances()) >= 0.69


def test_nothing_in_range_is_capped_and_flagged(tmp_path: Path) -> None:
    factory = MockFactory()
    sonar(factory, metres=3.0)
    with AgentHarness(
        config(max_distance=1.0, queue_len=3), tmp_path, pin_factory=factory
    ) as agent:
        agent.wait_for(lambda: len(agent.readings("readings/tank")) >= 2)
    readings = agent.readings("readings/tank")
    assert {r.values["distance"] for r in readings} == {1.0}
    assert {r.quality for r in readings} == {"out of range"}


def test_a_sensor_that_never_echoes_fails_naming_its_pins(tmp_path: Path) -> None:
    factory = MockFactory()  # plain mock pins: the trigger makes no echo
    with AgentHarness(config(echo_timeout=0.2), tmp_path, pin_factory=factory) as agent:
        agent.wait_for(lambda: agent.status()["sensors"][0]["last_error"] is not None)
        error = agent.status()["sensors"][0]["last_error"]
        assert agent.readings("readings/tank") == []
    assert "no echo" in error and "'GPIO24'" in error and "'GPIO23'" in error
