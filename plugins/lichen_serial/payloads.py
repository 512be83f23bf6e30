"""The payloads of the three frame types (pure functions), and a sender of frames.

DESCRIBE (device → host) says what one channel is; a device sends one per
channel at boot, periodically, and when the host asks::

    count u8 · id u8 · kind u8 · exponent i8 ·
    name_len u8 · name · unit_len u8 · unit · class_len u8 · class

READINGS (device → host) carries values sampled together, one item each::

    item = status<<6 | channel u8 · zigzag LEB128 varint (int64)

    value = varint · 10^exponent   (kind NUMBER)
    value = varint != 0            (kind BOOLEAN)

REQUEST (host → device) is one byte: ``1`` = describe every channel.

:class:`FrameEncoder` builds whole frames of each type for one sender,
exactly as the C library's ``lb_encoder`` does (the shared vectors in
``tests/vectors/bridge_frames.*`` hold both to it). The agent uses it for
its REQUEST frames; tests, benchmarks and simulators to play the device.

>>> temperature = Channel("temperature", unit="°C", device_class="temperature", exponent=-2)
>>> temperature.value(2137)
21.37
>>> encode_readings([RawValue(0, 2137)]).hex(" ")
'00 b2 21'
>>> parse_readings(bytes.fromhex("00 b2 21"))
(RawValue(channel=0, raw=2137, status=<Status.OK: 0>),)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from agent.readings import FieldSpec, Value

from .errors import EncodeError, FrameError
from .framing import FrameType, build_frame

__all__ = [
    "MAX_CHANNELS",
    "REQUEST_DESCRIBE",
    "Channel",
    "Described",
    "FrameEncoder",
    "Kind",
    "RawValue",
    "Status",
    "encode_describe",
    "encode_readings",
    "encode_request",
    "parse_describe",
    "parse_readings",
    "parse_request",
]

MAX_CHANNELS = 64
MAX_NAME, MAX_UNIT, MAX_CLASS = 32, 16, 24
MIN_EXPONENT, MAX_EXPONENT = -12, 12
REQUEST_DESCRIBE = 1
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CLASS = re.compile(r"[a-z0-9_]{0,24}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Kind(IntEnum):
    """What a channel's integers mean."""

    NUMBER = 0  #: ``raw · 10^exponent``
    BOOLEAN = 1  #: ``raw != 0``; the exponent must be 0


class Status(IntEnum):
    """The top two bits of a READINGS item: the device's own verdict on the value."""

    OK = 0
    CLIPPED = 1  #: the sensor saturated: the value is a bound, not a measurement
    FAULT = 2  #: the sensor failed: the value means nothing and is not recorded


_STATUSES = (Status.OK, Status.CLIPPED, Status.FAULT)


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel of a device, as its DESCRIBE frame states it.

    >>> Channel("humidity", unit="%", exponent=-1).field_spec()
    FieldSpec(unit='%', resolution=0.1, device_class=None)
    """

    name: str
    unit: str = ""
    device_class: str = ""
    exponent: int = 0
    kind: Kind = Kind.NUMBER

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise EncodeError(f"channel name {self.name!r} must match [a-z][a-z0-9_]{{0,31}}")
        unit = self.unit.encode()
        if len(unit) > MAX_UNIT or any(b < 0x20 or b == 0x7F for b in unit):
            raise EncodeError(f"unit {self.unit!r} must be 0-16 bytes of printable UTF-8")
        if not _CLASS.fullmatch(self.device_class):
            raise EncodeError(f"device class {self.device_class!r} must match [a-z0-9_]{{0,24}}")
        if not MIN_EXPONENT <= self.exponent <= MAX_EXPONENT:
            raise EncodeError(f"exponent {self.exponent} must be within -12..12")
        if self.kind == Kind.BOOLEAN and self.exponent != 0:
            raise EncodeError(f"boolean channel {self.name!r} must have exponent 0")

    def field_spec(self) -> FieldSpec:
        """How the agent describes this channel's field in ``_sensors``."""
        return FieldSpec(
            unit=self.unit or None,
            resolution=None if self.kind == Kind.BOOLEAN else 10.0**self.exponent,
            device_class=self.device_class or None,
        )

    def value(self, raw: int) -> Value:
        """The reading a raw integer of this channel stands for."""
        if self.kind == Kind.BOOLEAN:
            return raw != 0
        factor: int = 10 ** abs(self.exponent)
        return raw * factor if self.exponent >= 0 else raw / factor


class RawValue(NamedTuple):
    """One READINGS item: a channel id, its integer, the device's status.
    (A named tuple: a busy link makes many, and they cost least.)"""

    channel: int
    raw: int
    status: Status = Status.OK


@dataclass(frozen=True, slots=True)
class Described:
    """A parsed DESCRIBE payload: channel ``id`` of ``count`` is ``channel``."""

    count: int
    id: int
    channel: Channel


def _varint(value: int) -> bytes:
    number = (value << 1) ^ (value >> 63)  # zigzag: small magnitudes, short codes
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _read_varint(payload: bytes, position: int) -> tuple[int, int]:
    """The signed integer whose varint starts at ``position``, and where it ends."""
    start, end = position, len(payload)
    number = shift = 0
    while True:
        if position >= end or shift > 63:
            raise FrameError("payload", f"unterminated varint at offset {start}")
        byte = payload[position]
        position += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    if byte == 0 and shift:
        raise FrameError("payload", f"overlong varint at offset {start}")
    if number >> 64:
        raise FrameError("payload", f"varint beyond 64 bits at offset {start}")
    return (number >> 1) ^ -(number & 1), position


def encode_describe(count: int, channel_id: int, channel: Channel) -> bytes:
    """The DESCRIBE payload for channel ``channel_id`` of a device with ``count``."""
    if not 1 <= count <= MAX_CHANNELS or not 0 <= channel_id < count:
        raise EncodeError(f"channel id {channel_id} of {count}: need 0 <= id < count <= 64")
    out = bytearray([count, channel_id, channel.kind, channel.exponent & 0xFF])
    for text in (channel.name, channel.unit, channel.device_class):
        data = text.encode()
        out += bytes([len(data)]) + data
    return bytes(out)


def parse_describe(payload: bytes) -> Described:
    """The channel a DESCRIBE payload states; FrameError("payload") if malformed."""
    if len(payload) < 7:
        raise FrameError("payload", f"DESCRIBE of {len(payload)} bytes; at least 7")
    count, channel_id, kind, exponent = payload[0], payload[1], payload[2], payload[3]
    texts: list[str] = []
    position = 4
    for limit in (MAX_NAME, MAX_UNIT, MAX_CLASS):
        if position >= len(payload):
            raise FrameError("payload", "DESCRIBE ends before its texts")
        length = payload[position]
        data = payload[position + 1 : position + 1 + length]
        if length > limit or len(data) != length:
            raise FrameError("payload", f"DESCRIBE text of {length} bytes at offset {position}")
        try:
            texts.append(data.decode())
        except UnicodeDecodeError:
            raise FrameError(
                "payload", f"DESCRIBE text at offset {position} is not UTF-8"
            ) from None
        position += 1 + length
    if position != len(payload):
        raise FrameError("payload", f"{len(payload) - position} bytes after the DESCRIBE texts")
    if not 1 <= count <= MAX_CHANNELS or channel_id >= count or kind not in (0, 1):
        raise FrameError("payload", f"DESCRIBE id {channel_id} of {count}, kind {kind}")
    try:
        channel = Channel(
            texts[0], texts[1], texts[2], exponent - 256 * (exponent > 127), Kind(kind)
        )
    except EncodeError as exc:
        raise FrameError("payload", str(exc)) from None
    return Described(count, channel_id, channel)


def encode_readings(values: Sequence[RawValue]) -> bytes:
    """The READINGS payload for ``values`` (one per channel, at least one)."""
    if not values:
        raise EncodeError("a READINGS frame holds at least one value")
    out = bytearray()
    seen: set[int] = set()
    for item in values:
        if not 0 <= item.channel < MAX_CHANNELS or item.channel in seen:
            raise EncodeError(f"channel {item.channel}: must be 0..63 and appear once")
        if not _INT64_MIN <= item.raw <= _INT64_MAX:
            raise EncodeError(f"value {item.raw} of channel {item.channel} exceeds 64 bits")
        seen.add(item.channel)
        out.append(Status(item.status) << 6 | item.channel)
        out += _varint(item.raw)
    return bytes(out)


def parse_readings(payload: bytes) -> tuple[RawValue, ...]:
    """The values in a READINGS payload; FrameError("payload") if malformed."""
    if not payload:
        raise FrameError("payload", "READINGS without a value")
    items: list[RawValue] = []
    seen = position = 0
    end = len(payload)
    while position < end:
        head = payload[position]
        channel, status = head & 0x3F, head >> 6
        if status == 3:
            raise FrameError("payload", f"reserved status 3 at offset {position}")
        if seen >> channel & 1:
            raise FrameError("payload", f"channel {channel} twice in one READINGS")
        seen |= 1 << channel
        position += 1
        # inline the short varints most sensors send: one byte is -64 … 63,
        # two bytes -8192 … 8191 (a minimal second byte is 1 … 127)
        first = payload[position] if position < end else 0x80
        if first < 0x80:
            position += 1
            raw = (first >> 1) ^ -(first & 1)
        elif position + 1 < end and 0 < payload[position + 1] < 0x80:
            number = (first & 0x7F) | payload[position + 1] << 7
            position += 2
            raw = (number >> 1) ^ -(number & 1)
        else:
            raw, position = _read_varint(payload, position)
        items.append(RawValue(channel, raw, _STATUSES[status]))
    return tuple(items)


def encode_request(what: int = REQUEST_DESCRIBE) -> bytes:
    """The REQUEST payload: one byte saying what the host asks for."""
    if not 0 <= what <= 0xFF:
        raise EncodeError(f"request {what} must fit in one byte")
    return bytes([what])


def parse_request(payload: bytes) -> int:
    """What a REQUEST payload asks for; FrameError("payload") unless one byte."""
    if len(payload) != 1:
        raise FrameError("payload", f"REQUEST of {len(payload)} bytes; exactly 1")
    return payload[0]


# ------------------------------------------------------------------ sender


class FrameEncoder:
    """Builds the frames of one sender. Each frame takes the next counter value
    (modulo 2**16); ``boot_id`` should differ on every boot of the device.

    >>> from lichen_serial.payloads import Channel, RawValue
    >>> channels = [Channel("temperature", unit="°C", exponent=-2)]
    >>> device = FrameEncoder(boot_id=0x1234)
    >>> describe = device.describe(channels, 0)
    >>> readings = device.readings([RawValue(0, 2137)])
    >>> device.counter
    2
    >>> readings.hex(" ")
    '00 05 12 34 12 01 01 07 b2 21 3a 3e 74 ee 00'
    """

    def __init__(self, boot_id: int, counter: int = 0) -> None:
        if not (0 <= boot_id <= 0xFFFF and 0 <= counter <= 0xFFFF):
            raise EncodeError(f"boot id {boot_id} and counter {counter} must fit in 16 bits")
        self.boot_id = boot_id
        #: the counter of the next frame
        self.counter = counter

    def frame(self, frame_type: int, payload: bytes) -> bytes:
        """A frame of any type (reserved types included, for tests) with the next counter."""
        wire = build_frame(frame_type, boot_id=self.boot_id, counter=self.counter, payload=payload)
        self.counter = (self.counter + 1) & 0xFFFF
        return wire

    def describe(self, channels: Sequence[Channel], channel_id: int) -> bytes:
        """The DESCRIBE frame for ``channels[channel_id]``."""
        if not 0 <= channel_id < len(channels) <= MAX_CHANNELS:
            raise EncodeError(f"channel id {channel_id} of {len(channels)} channels (at most 64)")
        payload = encode_describe(len(channels), channel_id, channels[channel_id])
        return self.frame(FrameType.DESCRIBE, payload)

    def describe_all(self, channels: Sequence[Channel]) -> bytes:
        """One DESCRIBE frame per channel, in id order: what a device sends at boot."""
        return b"".join(self.describe(channels, i) for i in range(len(channels)))

    def readings(self, values: Sequence[RawValue]) -> bytes:
        """A READINGS frame: ``values`` sampled together."""
        return self.frame(FrameType.READINGS, encode_readings(values))

    def request(self, what: int = REQUEST_DESCRIBE) -> bytes:
        """A REQUEST frame (what a host sends a device)."""
        return self.frame(FrameType.REQUEST, encode_request(what))
