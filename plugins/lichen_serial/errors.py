"""The serial bridge's errors: one type per concern, all :class:`~agent.errors.LichenError`.

=================  ==========================================================
``FrameError``     bytes from the device are not a valid frame (the *remote*
                   side sent garbage). :func:`~lichen_serial.framing.parse_frame`
                   raises it; :class:`~lichen_serial.frames.FrameDecoder` never
                   does — it turns it into a ``BadFrame`` event and counts it.
``EncodeError``    a frame cannot be built from what the caller gave (the
                   *local* side misused the encoder: a name too long, a value
                   beyond 64 bits, too many readings for one frame).
``PortError``      the serial port cannot be opened, read or written (the
                   device is unplugged, the path is wrong, another process
                   holds it). pyserial's and the OS's errors are mapped to it
                   where they enter, in :mod:`lichen_serial.link`.
=================  ==========================================================

Each is also the standard type it resembles, so ``except ValueError`` and
``except OSError`` keep working for callers who do not know these classes.
"""

from __future__ import annotations

from agent.errors import LichenError, PluginError

__all__ = ["EncodeError", "FrameError", "PortError"]


class FrameError(LichenError, ValueError):
    """The bytes are not a valid frame; ``reason`` is one short word.

    Reasons, in the order they are checked: ``"oversize"`` (longer than any
    frame), ``"cobs"`` (the COBS code bytes do not fit the chunk),
    ``"short"`` (fewer bytes than a header and a CRC), ``"crc"`` (the CRC-32
    does not match), ``"version"`` (not protocol version 1), ``"payload"``
    (the CRC matched, but the payload breaks the layout of its frame type).

    >>> from lichen_serial.framing import parse_frame
    >>> try:
    ...     parse_frame(b"\\x02\\x01")
    ... except FrameError as exc:
    ...     print(exc.reason)
    short
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"bad frame ({reason})" + (f": {detail}" if detail else ""))


class EncodeError(LichenError, ValueError):
    """A frame cannot be built from the given channels or values.

    >>> from lichen_serial.payloads import Channel
    >>> try:
    ...     Channel("Temperature")
    ... except EncodeError as exc:
    ...     print(exc)
    channel name 'Temperature' must match [a-z][a-z0-9_]{0,31}
    """


class PortError(PluginError, OSError):
    """The serial port is unavailable: missing, unplugged, busy or failing.

    The sensor catches it, logs it once and reconnects with backoff; it never
    reaches the agent as a plugin failure.
    """
