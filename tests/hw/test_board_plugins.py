"""Hardware in the loop: the built-in board plugins on a real Raspberry Pi.

Marked ``hw``, so deselected by default. On a board::

    .venv/bin/python -m pytest -m hw tests/hw -v

Each test skips, saying what is missing, when its hardware is absent. What to
wire, and the environment variables that say where:

``LICHEN_HW_BOARD``     board profile (default ``rpi-4``)
``LICHEN_HW_LOOPBACK``  ``"OUT,IN"``: two free GPIOs joined by a jumper wire, e.g.
                        ``"GPIO20,GPIO21"`` (header pins 38 and 40). A button
                        sensor watches IN while the test drives OUT.
``LICHEN_HW_HCSR04``    ``"ECHO,TRIGGER"`` of an HC-SR04 facing something 5 cm–2 m
                        away, e.g. ``"GPIO24,GPIO23"``
``LICHEN_HW_ADC``       ``"CHIP:CHANNEL"`` of an MCP3xxx on SPI0 CE0 with something
                        (a potentiometer) on the channel, e.g. ``"MCP3008:0"``

The system sensor (CPU temperature, throttle flags) and the 1-Wire sensor (any
DS18B20 on ``/sys/bus/w1/devices``) need no variable: they test what is there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.errors import StoreError
from agent.testing import AgentHarness

pytestmark = pytest.mark.hw

BOARD = os.environ.get("LICHEN_HW_BOARD", "rpi-4")
LOG = "[log]\nflush_interval = 0.1\n"
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
W1_DEVICES = Path("/sys/bus/w1/devices")


def env_pins(name: str, what: str) -> list[str]:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"set {name} to run this test ({what})")
    return [part.strip() for part in value.split(",")]


def harness(config: str, home: Path) -> AgentHarness:
    """An agent on the real board, with the board's own pin factory."""
    return AgentHarness(LOG + config, home, board=BOARD)


def wait_for_readings(
    agent: AgentHarness, collection: str, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    def stored() -> list[dict[str, Any]]:
        if agent.agent.readings.stored == 0:
            return []
        try:
            return [r.values for r in agent.readings(collection)]
        except StoreError:  # the harness opened the log while the agent wrote: poll again
            return []

    agent.wait_for(lambda: len(stored()) >= count, timeout)
    return stored()


@pytest.mark.skipif(not THERMAL.exists(), reason=f"no CPU thermal zone ({THERMAL})")
def test_system_sensor_reads_the_real_cpu_temperature(tmp_path: Path) -> None:
    with harness('[[sensors.system]]\nname = "health"\ninterval = 0.5\n', tmp_path) as agent:
        values = wait_for_readings(agent, "readings/health", 2)[-1]
    actual = int(THERMAL.read_text()) / 1000
    assert 0 < values["cpu_temperature"] < 100
    assert abs(values["cpu_temperature"] - actual) < 10
    assert 0 < values["memory_available"] <= values["memory_total"]


@pytest.mark.skipif(
    not THROTTLED.exists() and shutil.which("vcgencmd") is None,
    reason="not a Raspberry Pi: no get_throttled in sysfs and no vcgencmd",
)
def test_system_sensor_reads_the_throttle_flags(tmp_path: Path) -> None:
    with harness('[[sensors.system]]\nname = "health"\ninterval = 0.5\n', tmp_path) as agent:
        values = wait_for_readings(agent, "readings/health", 1)[-1]
    word = values["throttle_bits"]
    assert isinstance(word, int) and word >= 0
    assert values["undervoltage"] == bool(word & 1)
    assert values["undervoltage_since_boot"] == bool(word & (1 << 16))


def test_button_through_a_jumper_wire(tmp_path: Path) -> None:
    out, inp = env_pins("LICHEN_HW_LOOPBACK", "two GPIOs joined by a jumper wire")
    from gpiozero import OutputDevice

    config = f'[[sensors.gpio_button]]\nname = "button"\npin = "{inp}"\nbounce_time = 0.01\n'
    with harness(config, tmp_path) as agent:
        factory = agent.hardware.pin_factory()
        driver = OutputDevice(agent.hardware.resolve(out), initial_value=True, pin_factory=factory)
        try:
            wait_for_readings(agent, "readings/button", 1)
            for press in range(3):
                driver.off()  # pulls IN to ground: pressed
                wait_for_readings(agent, "readings/button", 2 + 2 * press)
                driver.on()
                wait_for_readings(agent, "readings/button", 3 + 2 * press)
        finally:
            driver.close()
        pressed = [v["pressed"] for v in wait_for_readings(agent, "readings/button", 7)]
    assert pressed == [False, True, False, True, False, True, False]


@pytest.mark.skipif(
    not W1_DEVICES.is_dir() or not any(W1_DEVICES.glob("28-*")),
    reason="no DS18B20 on /sys/bus/w1/devices (dtoverlay=w1-gpio, probes wired)",
)
def test_onewire_reads_the_probes(tmp_path: Path) -> None:
    probes = sorted(p.name for p in W1_DEVICES.glob("28-*"))
    with harness('[[sensors.onewire]]\nname = "probes"\ninterval = 1.0\n', tmp_path) as agent:
        values = wait_for_readings(agent, "readings/probes", 1, timeout=60)[0]
    assert set(values) <= set(probes) and values
    assert all(-55 <= t <= 125 for t in values.values())


def test_hcsr04_measures_a_distance(tmp_path: Path) -> None:
    echo, trigger = env_pins("LICHEN_HW_HCSR04", "an HC-SR04's echo and trigger pins")
    config = (
        f'[[sensors.gpio_distance]]\nname = "sonar"\necho = "{echo}"\ntrigger = "{trigger}"\n'
        "max_distance = 2.0\ninterval = 0.5\n"
    )
    with harness(config, tmp_path) as agent:
        readings = wait_for_readings(agent, "readings/sonar", 3)
    assert all(0.02 <= r["distance"] <= 2.0 for r in readings)


def test_adc_reads_a_channel(tmp_path: Path) -> None:
    (spec,) = env_pins("LICHEN_HW_ADC", "an MCP3xxx on SPI0 CE0, as CHIP:CHANNEL")
    chip, _, channel = spec.partition(":")
    if not Path("/dev/spidev0.0").exists():
        pytest.skip("SPI is off: no /dev/spidev0.0 (dtparam=spi=on)")
    config = (
        f'[[sensors.gpio_adc]]\nname = "adc"\nchip = "{chip}"\nchannels = [{int(channel)}]\n'
        "interval = 0.2\n"
    )
    with harness(config, tmp_path) as agent:
        readings = wait_for_readings(agent, "readings/adc", 3)
    assert all(0.0 <= r[f"ch{channel}"] <= 1.0 for r in readings)
