"""The thin I/O shell: one serial port, opened with pyserial, errors mapped at the edge.

:class:`SerialLink` is the only module that touches pyserial. It opens a
device path (``/dev/ttyACM0``) or any pyserial URL (``loop://``,
``socket://host:port``, ``rfc2217://…``), reads whatever arrived within a
short timeout, writes frames, and turns every pyserial and OS failure into
:class:`~lichen_serial.errors.PortError` — so the sensor above it handles a
single exception type for "the device went away".
"""

from __future__ import annotations

import contextlib
from typing import Any

from agent.errors import PluginError

from .errors import PortError

__all__ = ["URL_SCHEMES", "SerialLink", "check_port"]

#: pyserial's URL handlers (``serial.serial_for_url``)
URL_SCHEMES = ("loop", "socket", "rfc2217", "spy", "hwgrep", "alt", "cp2110")
READ_CHUNK = 65536


def check_port(port: str) -> None:
    """Refuse what can never open (the configuration check; ValueError)."""
    if not port.strip():
        raise ValueError("must name a device, e.g. /dev/ttyACM0, or a pyserial URL")
    scheme, separator, _ = port.partition("://")
    if separator and scheme not in URL_SCHEMES:
        raise ValueError(f"unknown URL scheme {scheme!r}; pyserial knows {', '.join(URL_SCHEMES)}")


def _serial() -> Any:
    try:
        import serial
    except ImportError:
        raise PluginError(
            "the serial sensor needs pyserial, which is not installed. "
            "Fix: pip install 'lichen[serial]'"
        ) from None
    return serial


class SerialLink:
    """One serial port. Not thread-safe: the sensor's own thread uses it.

    >>> link = SerialLink("loop://", 115200)
    >>> link.open()
    >>> link.write(b"\\x00hello\\x00")
    True
    >>> link.read()
    b'\\x00hello\\x00'
    >>> link.close()
    """

    def __init__(self, port: str, baudrate: int, *, read_timeout: float = 0.1) -> None:
        self.port = port
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self._serial: Any = None  # the open port
        # what pyserial raises, once imported: any failure, and a write timeout
        self._errors: tuple[type[Exception], ...] = (OSError,)
        self._timeout: type[Exception] = TimeoutError

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        """Open the port (8N1, raw, exclusive where the OS supports it)."""
        serial = _serial()
        self._errors = (serial.SerialException, OSError)
        self._timeout = serial.SerialTimeoutException
        self.close()
        options: dict[str, Any] = {
            "baudrate": self.baudrate,
            "timeout": self.read_timeout,
            "write_timeout": 1.0,
        }
        if "://" not in self.port:
            options["exclusive"] = True  # two agents must not share one device
        try:
            self._serial = serial.serial_for_url(self.port, **options)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(f"cannot open {self.port}: {exc}") from exc

    def read(self) -> bytes:
        """The bytes that arrived: waits up to ``read_timeout`` for the first,
        then takes what is buffered. ``b""`` if nothing came."""
        port = self._need_open()
        try:
            waiting = port.in_waiting
            data: bytes = port.read(min(max(waiting, 1), READ_CHUNK))
        except self._errors as exc:
            raise PortError(f"{self.port} failed: {exc}") from exc
        return data

    def write(self, data: bytes) -> bool:
        """Send ``data``; False if the device did not take it within a second
        (one that never reads its input must not stall the agent)."""
        port = self._need_open()
        try:
            port.write(data)
        except self._timeout:
            return False
        except self._errors as exc:
            raise PortError(f"{self.port} failed: {exc}") from exc
        return True

    def close(self) -> None:
        """Close the port if open. Never raises: the device may be gone already."""
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(Exception):  # a vanished USB device may fail even this
                port.close()

    def _need_open(self) -> Any:
        if self._serial is None:
            raise PortError(f"{self.port} is not open")
        return self._serial
