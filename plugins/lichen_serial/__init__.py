"""lichen_serial: readings from a microcontroller over a serial line.

The device runs the C library in ``firmware-bridge/`` (an Arduino, a Pico,
any MCU with a UART or USB serial) and describes its own channels; the agent
needs only the port::

    [[sensors.serial]]
    name = "weather"
    port = "/dev/ttyACM0"

The layers, each usable alone:

=================  ==========================================================
``framing``        COBS, CRC-32, header: bytes ⇄ :class:`Frame` (pure)
``payloads``       DESCRIBE / READINGS / REQUEST payloads (pure), and
                   :class:`FrameEncoder`, the device side in Python
``frames``         :class:`FrameDecoder`, the sans-IO stream decoder, and
                   the events it hands out
``device``         :class:`DeviceModel`, channels learnt → Lichen readings;
                   :class:`LinkHealth`, the health readings
``link``           :class:`SerialLink`, the pyserial shell
``sensor``         :class:`SerialSensor`, the plugin that joins them
=================  ==========================================================
"""

from .device import DeviceModel, Sample
from .errors import EncodeError, FrameError, PortError
from .frames import DecoderStats, FrameDecoder
from .framing import Frame, FrameType, build_frame, parse_frame
from .link import SerialLink
from .payloads import Channel, FrameEncoder, Kind, RawValue, Status
from .sensor import SerialConfig, SerialSensor, reconnect_backoff

__all__ = [
    "Channel",
    "DecoderStats",
    "DeviceModel",
    "EncodeError",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "FrameError",
    "FrameType",
    "Kind",
    "PortError",
    "RawValue",
    "Sample",
    "SerialConfig",
    "SerialLink",
    "SerialSensor",
    "Status",
    "build_frame",
    "parse_frame",
    "reconnect_backoff",
]
