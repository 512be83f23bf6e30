"""The pyserial shell (over pyserial's loop://), the backoff, and the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.board import load_board
from agent.config import parse_config
from agent.errors import ConfigError, LichenError
from agent.hardware import Hardware
from agent.runtime.configure import configure_sensors
from lichen_serial.errors import PortError
from lichen_serial.frames import NEED_DATA, FrameDecoder, Readings, Request
from lichen_serial.link import SerialLink, check_port
from lichen_serial.payloads import FrameEncoder, RawValue
from lichen_serial.sensor import SerialConfig, SerialSensor, reconnect_backoff


def test_frames_through_a_loopback_port_decode() -> None:
    link = SerialLink("loop://", 115200, read_timeout=0.05)
    link.open()
    try:
        device = FrameEncoder(boot_id=3)
        sent = [device.readings([RawValue(0, i)]) for i in range(200)]
        decoder = FrameDecoder()
        received: list[Readings] = []
        for frame in sent:
            assert link.write(frame)
            decoder.receive_data(link.read())
            while (event := decoder.next_event()) is not NEED_DATA:
                assert isinstance(event, Readings)
                received.append(event)
        assert [e.values[0].raw for e in received] == list(range(200))
        assert link.read() == b""  # nothing more: the read timed out
        assert link.write(FrameEncoder(0).request())  # what the agent sends a device
        replies = FrameDecoder()
        replies.receive_data(link.read())
        assert isinstance(replies.next_event(), Request)
    finally:
        link.close()
    assert not link.is_open


def test_a_missing_device_is_a_port_error(tmp_path: Path) -> None:
    link = SerialLink(str(tmp_path / "ttyACM9"), 9600)
    with pytest.raises(PortError) as caught:
        link.open()
    assert isinstance(caught.value, OSError) and isinstance(caught.value, LichenError)
    assert "ttyACM9" in str(caught.value)
    with pytest.raises(PortError):
        link.read()
    with pytest.raises(PortError):
        link.write(b"\x00")
    link.close()  # closing what never opened is fine


def serial_config(**keys: float) -> SerialConfig:
    return SerialConfig(name="mcu", port="loop://", **keys)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_its_limit_and_resets() -> None:
    backoff = reconnect_backoff(serial_config(reconnect_min=0.1, reconnect_max=0.5))
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1
    never_below = reconnect_backoff(serial_config(reconnect_min=2.0, reconnect_max=1.0))
    assert [never_below.next() for _ in range(2)] == [2.0, 2.0]  # never below the first


@pytest.mark.parametrize("port", ["/dev/ttyACM0", "COM3", "loop://", "socket://10.0.0.5:7000"])
def test_ports_that_can_be_configured(port: str) -> None:
    check_port(port)


@pytest.mark.parametrize(("port", "problem"), [("", "must name"), ("tcp://x:1", "unknown URL")])
def test_ports_refused_at_configuration(port: str, problem: str) -> None:
    text = f'[[sensors.serial]]\nname = "w"\nport = "{port}"\n'
    with pytest.raises(ConfigError, match=problem) as caught:
        configure_sensors(parse_config(text))
    assert "port" in str(caught.value)


def test_baudrate_and_port_are_checked() -> None:
    with pytest.raises(ConfigError, match="baudrate"):
        configure_sensors(
            parse_config('[[sensors.serial]]\nname = "w"\nport = "loop://"\nbaudrate = 0\n')
        )
    with pytest.raises(ConfigError, match="port"):
        configure_sensors(parse_config('[[sensors.serial]]\nname = "w"\n'))


def test_the_header_uart_claims_its_pins() -> None:
    hardware = Hardware(load_board("rpi-zero-2w"))
    text = '[[sensors.serial]]\nname = "w"\nport = "/dev/serial0"\nbus = "uart0"\n'
    (configured,) = configure_sensors(parse_config(text), hardware)
    assert SerialSensor.claims(configured.config) == ("bus:uart0",)
    assert hardware.claims == {14: {"w"}, 15: {"w"}}
    usb = configure_sensors(parse_config(text.replace('bus = "uart0"\n', "")), hardware)
    assert SerialSensor.claims(usb[0].config) == ()
