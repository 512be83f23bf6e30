"""Board profiles and their buses: every profile is consistent, the board is
recognised from its device-tree model, and a sensor asking for a pin that an
enabled bus (I²C, SPI, UART, 1-Wire) takes is refused at start — naming the
pin, the bus and the fix — in whichever order the two were configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.board import BUS_KINDS, detect_board, list_boards, load_board
from agent.config import parse_config
from agent.errors import ConfigError
from agent.runtime.configure import configure_sensors, hardware_for

from .conftest import run_lichen

BOARDS = list_boards()
PI = [b for b in BOARDS if b.startswith("rpi-")]


def test_the_documented_boards_are_there() -> None:
    assert {"generic", "rpi-3b-plus", "rpi-4", "rpi-5", "rpi-cm4", "rpi-zero-2w"} <= set(BOARDS)


@pytest.mark.parametrize("name", BOARDS)
def test_every_profile_is_consistent(name: str) -> None:
    board = load_board(name)
    assert board.description and board.ram_mb > 0 and board.cores > 0
    assert set(board.radios) == {"wifi", "ble"}
    for bus in board.buses.values():
        assert bus.kind in BUS_KINDS and bus.pins and bus.enable, bus
        for number in (*bus.pins.values(), *bus.selects.values()):
            assert number in board.gpio and number not in board.reserved, (bus, number)


@pytest.mark.parametrize("name", PI)
def test_every_pi_has_the_header_buses_at_their_default_pins(name: str) -> None:
    board = load_board(name)
    assert board.buses["i2c1"].pins == {"SDA": 2, "SCL": 3}
    assert board.buses["spi0"].pins == {"MISO": 9, "MOSI": 10, "SCLK": 11}
    assert board.buses["spi0"].selects == {"CE0": 8, "CE1": 7}
    assert board.buses["uart0"].pins == {"TXD": 14, "RXD": 15}
    assert board.buses["w1"].pins == {"DQ": 4}
    assert board.buses["w1"].enable == "dtoverlay=w1-gpio"
    assert board.models, "a Pi profile must be recognisable from /proc/device-tree/model"


def test_the_pi_5_differs_where_it_does() -> None:
    pi5 = load_board("rpi-5")
    assert pi5.pin_factory == "lgpio"  # RPi.GPIO does not drive the RP1
    assert pi5.buses["uart0"].enable == "dtparam=uart0=on"
    assert "i2c6" in load_board("rpi-4").buses and "i2c6" not in pi5.buses


@pytest.mark.parametrize(
    ("model", "board"),
    [
        ("Raspberry Pi 4 Model B Rev 1.4\x00", "rpi-4"),
        ("Raspberry Pi 400 Rev 1.0\x00", "rpi-4"),
        ("Raspberry Pi 5 Model B Rev 1.0\x00", "rpi-5"),
        ("Raspberry Pi 3 Model B Plus Rev 1.3\x00", "rpi-3b-plus"),
        ("Raspberry Pi Compute Module 4 Rev 1.0\x00", "rpi-cm4"),
        ("Raspberry Pi Zero 2 W Rev 1.0\x00", "rpi-zero-2w"),
        ("Raspberry Pi Model B Rev 2", None),
        ("QEMU Virtual Machine", None),
    ],
)
def test_boards_are_recognised_by_their_model(model: str, board: str | None) -> None:
    assert detect_board(model) == board


def configure(text: str, board: str = "sim") -> list[str]:
    config = parse_config(f'[node]\nboard = "{board}"\n' + text)
    hardware = hardware_for(config, pin_factory=MockFactory())
    return [s.name for s in configure_sensors(config, hardware)]


def refused(text: str, board: str = "sim") -> str:
    with pytest.raises(ConfigError) as caught:
        configure(text, board)
    return str(caught.value)


BME280 = '[[sensors.bme280]]\nname = "weather"\n'


def test_a_bme280_configures_on_a_generic_board() -> None:
    """The generic profile takes any I²C bus the kernel numbers (no pins known)."""
    assert configure(BME280 + "bus = 3\n", "generic") == ["weather"]
    assert configure(BME280, "generic") == ["weather"]
    generic = load_board("generic")
    bus = generic.bus("i2c3")
    assert bus is not None and bus.device == "/dev/i2c-3" and not bus.pins
    assert generic.bus("spi0") is None


BUTTON = '[[sensors.gpio_button]]\nname = "button"\npin = {}\n'


@pytest.mark.parametrize(
    ("bus_config", "pin", "number", "role", "bus", "enabled_by"),
    [
        (BME280, '"SDA"', 2, "SDA", "I²C bus i2c1", "used by sensor 'weather'"),
        ('[gpio]\nbuses = ["uart0"]\n', "14", 14, "TXD", "UART bus uart0", "[gpio] buses"),
        ('[gpio]\nbuses = ["w1"]\n', '"GPIO4"', 4, "DQ", "1-Wire bus w1", "[gpio] buses"),
        ('[gpio]\nbuses = ["spi0"]\n', '"CE0"', 8, "CE0", "SPI bus spi0", "[gpio] buses"),
        ('[gpio]\nbuses = ["uart0", "i2c1"]\n', "3", 3, "SCL", "I²C bus i2c1", "[gpio] buses"),
    ],
)
def test_a_pin_of_an_enabled_bus_is_refused(
    bus_config: str, pin: str, number: int, role: str, bus: str, enabled_by: str
) -> None:
    message = refused(bus_config + BUTTON.format(pin))
    assert f"(GPIO{number}) on board 'sim' is {role} of the {bus}" in message, message
    assert enabled_by in message and "Fix: choose a pin no enabled bus takes" in message
    assert message.startswith('lichen.toml: [[sensors.gpio_button]] "button": pin '), message
    assert "disable it in config.txt (remove " in message


def test_the_bus_is_named_in_either_order() -> None:
    """A bus sensor configured after the plain pin's sensor (plugins go in name
    order: gpio_button before onewire) is refused with the bus named too."""
    message = refused(BUTTON.format(4) + '[[sensors.onewire]]\nname = "soil"\npin = "W1"\n')
    assert "GPIO4 on board 'sim' is DQ of the 1-Wire bus w1" in message
    assert "which sensor 'soil' uses, but 'button' uses it as a plain pin" in message
    assert "Fix: move 'button' to another pin (free: GPIO2" in message
    serial = '[[sensors.serial]]\nname = "gps"\nport = "/dev/serial0"\nbus = "uart0"\n'
    message = refused(BUTTON.format(15) + serial)
    assert "[[sensors.serial]] \"gps\": GPIO15 on board 'sim' is RXD of the UART bus" in message


def test_devices_on_a_bus_share_it_and_keep_their_chip_selects() -> None:
    text = '[gpio]\nbuses = ["spi0", "i2c1", "w1"]\n'
    assert configure(
        text
        + '[[sensors.gpio_adc]]\nname = "soil"\n'
        + '[[sensors.onewire]]\nname = "probes"\npin = "W1"\n'
        + BME280
        + BUTTON.format(17)
    ) == ["weather", "soil", "button", "probes"]


def test_a_1_wire_bus_moved_to_another_pin() -> None:
    moved = '[gpio]\nbuses = ["w1=GPIO17"]\n'
    assert configure(moved + BUTTON.format(4)) == ["button"]  # GPIO4 is free then
    assert "is DQ of the 1-Wire bus w1" in refused(moved + BUTTON.format(17))
    clash = refused(moved + '[[sensors.onewire]]\nname = "p"\npin = 4\n')
    assert "1-Wire bus w1 on board 'sim' is on GPIO17 for [gpio] buses" in clash


def test_an_unknown_bus_in_the_config_names_the_board_s_buses() -> None:
    message = refused('[gpio]\nbuses = ["i2c9"]\n')
    assert "[gpio] buses" in message and "board 'sim' has no bus 'i2c9'" in message
    assert "(it has: i2c1, spi0, uart0, w1)" in message


@pytest.mark.slow
def test_lichen_run_refuses_to_start(tmp_path: Path) -> None:
    """The real command: exit 2 (a configuration error), the reason on stderr."""
    home = tmp_path / "node"
    run_lichen("init", "--board", "rpi-4", "--name", "shed", home=home)
    config = home / "lichen.toml"
    text = config.read_text().replace('# buses = ["i2c1"]', 'buses = ["i2c1"]')
    config.write_text(text + BUTTON.format('"BOARD3"'))
    result = run_lichen("run", home=home, check=False)
    assert result.returncode == 2, result.stderr
    assert "lichen: configuration error:" in result.stderr
    assert "pin 'BOARD3' (GPIO2) on board 'rpi-4' is SDA of the I²C bus i2c1" in result.stderr
    assert "remove i2c1 from [gpio] buses" in result.stderr
