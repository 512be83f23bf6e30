"""MCP3xxx ADCs in a real agent, answering on gpiozero's mock SPI (see mock_adc)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.testing import AgentHarness
from lichen_gpio.adc import CHIPS

from .mock_adc import MockMCP3xxx, expected_value

LOG = "[log]\nflush_interval = 0.05\n"


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> MockFactory:
    """The mock factory, also installed as gpiozero's default: gpiozero 2.0's software
    SPI bus (``SPISoftwareBus``, which MockFactory uses for every SPI interface) calls
    ``Device.__init__()`` without the ``pin_factory`` it was given, so it needs a
    default factory to exist. The plugin still passes the runtime's factory to every
    device; on a board the runtime installs its factory as the default too."""
    mock = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", mock)
    return mock


def config(**keys: object) -> str:
    table = {"name": '"adc"', "interval": 0.02, **keys}
    return LOG + "[[sensors.gpio_adc]]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())


def first(agent: AgentHarness) -> dict[str, Any]:
    return agent.wait_for_readings("readings/adc")[0].values


def described(agent: AgentHarness) -> dict[str, Any]:
    return agent.fields("readings/adc")


@pytest.mark.parametrize("chip", sorted(CHIPS))
def test_every_chip_reads_its_channels(tmp_path: Path, factory: MockFactory, chip: str) -> None:
    count, bits, one_channel = CHIPS[chip]
    adc = MockMCP3xxx(factory, chip)
    codes = [(i * 397 + 101) % (1 << bits) for i in range(len(adc.codes))]
    adc.codes[:] = codes
    channels = [0] if one_channel else [0, count - 1]
    if one_channel:  # always differential: IN+ − IN−
        adc.codes[1] = 0
    text = config(chip=f'"{chip}"', channels=channels)
    with AgentHarness(text, tmp_path, pin_factory=factory) as agent:
        values = first(agent)
    step = 1 / (1 << bits)
    resolution = 10 ** math.floor(math.log10(step))
    assert described(agent)[f"ch{channels[-1]}"] == {"resolution": resolution}
    for channel in channels:
        want = expected_value(codes[channel], bits)
        assert values[f"ch{channel}"] == pytest.approx(want, abs=resolution)
    adc.close()


def test_calibrated_channels_with_units(tmp_path: Path, factory: MockFactory) -> None:
    adc = MockMCP3xxx(factory, "MCP3008")
    adc.codes[0], adc.codes[1] = 512, 700  # probe at half of vref; battery divider
    text = config(
        channels=[0, 1],
        names='["moisture", "battery"]',
        scale=[-200.0, 6.6],
        offset=[160.0, 0.0],
        units='["%", "V"]',
        device_classes='["moisture", "voltage"]',
        oversample=3,
    )
    with AgentHarness(text, tmp_path, pin_factory=factory) as agent:
        values = first(agent)
        fields = described(agent)
    assert values["moisture"] == pytest.approx(expected_value(512, 10) * -200 + 160, abs=0.1)
    assert values["battery"] == pytest.approx(expected_value(700, 10) * 6.6, abs=0.001)
    assert fields == {
        "moisture": {"unit": "%", "resolution": 0.1, "device_class": "moisture"},
        "battery": {"unit": "V", "resolution": 0.001, "device_class": "voltage"},
    }
    assert adc.conversions >= 6  # oversampled: three conversions per channel
    adc.close()


def test_voltage_and_raw_sources(tmp_path: Path, factory: MockFactory) -> None:
    adc = MockMCP3xxx(factory, "MCP3208")
    adc.codes[3] = 2048
    with AgentHarness(config(chip='"MCP3208"', channels=[3], source='"raw"'), tmp_path / "raw",
                      pin_factory=factory) as agent:  # fmt: skip
        assert first(agent) == {"ch3": 2048}
    text = config(chip='"MCP3208"', channels=[3], source='"voltage"', vref=5.0)
    with AgentHarness(text, tmp_path / "volts", pin_factory=factory) as agent:
        assert first(agent)["ch3"] == pytest.approx(expected_value(2048, 12) * 5.0, abs=0.001)
        assert described(agent)["ch3"] == {"unit": "V", "resolution": 0.001}
    adc.close()


def test_differential_channels(tmp_path: Path, factory: MockFactory) -> None:
    adc = MockMCP3xxx(factory, "MCP3304")
    adc.codes[:4] = [100, 600, 900, 300]
    text = config(chip='"MCP3304"', channels=[0, 2], differential="true", source='"raw"')
    with AgentHarness(text, tmp_path, pin_factory=factory) as agent:
        assert first(agent) == {"ch0": -500, "ch2": 600}  # 13-bit signed on the 33xx
    adc.close()


def test_software_spi_and_the_second_chip_select(tmp_path: Path, factory: MockFactory) -> None:
    soft = MockMCP3xxx(factory, "MCP3004", pins=(21, 20, 19, 16))
    soft.codes[2] = 333
    ce1 = MockMCP3xxx(factory, "MCP3008", device=1)
    ce1.codes[5] = 777
    text = (
        config(
            chip='"MCP3004"',
            channels=[2],
            source='"raw"',
            clock_pin='"GPIO21"',
            mosi_pin='"GPIO20"',
            miso_pin='"GPIO19"',
            select_pin='"GPIO16"',
        )
        + '[[sensors.gpio_adc]]\nname = "ce1"\ninterval = 0.02\nchannels = [5]\n'
        + 'source = "raw"\ndevice = 1\n'
    )
    with AgentHarness(text, tmp_path, pin_factory=factory) as agent:
        assert first(agent) == {"ch2": 333}
        agent.wait_for(lambda: len(agent.readings("readings/ce1")) >= 1)
        assert agent.readings("readings/ce1")[0].values == {"ch5": 777}
    soft.close()
    ce1.close()
