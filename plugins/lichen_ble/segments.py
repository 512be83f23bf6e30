"""Link segments: what one GATT value (an rx write, a tx notification) carries.

The layout is in ``docs/ble.md`` ("Segments"); every segment starts with a
type byte, integers are big-endian::

    OPEN   0x01  version u8 (1), max_value u16, window u32
           0x01  version u8 (2), max_value u16, mode u8, window u24
    DATA   0x02  seq u16, payload (1 byte or more)
    FIN    0x03  seq u16
    ACK    0x04  next u16, window u32
    NAK    0x05  next u16, window u32
    PROBE  0x06  (nothing)
    CLOSE  0x07  code u8, reason (UTF-8)

>>> decode(Data(seq=7, payload=b"hi").encode())
Data(seq=7, payload=b'hi')
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

from agent.errors import RemoteProtocolError

__all__ = [
    "DATA_HEADER",
    "MIN_VALUE",
    "SEQ_SPACE",
    "Ack",
    "Close",
    "CloseCode",
    "Data",
    "Fin",
    "Mode",
    "Nak",
    "Open",
    "Probe",
    "Segment",
    "ahead",
    "decode",
]

SEQ_SPACE = 1 << 16
DATA_HEADER = 3  # type + seq
MIN_VALUE = 20  # the smallest GATT value (ATT MTU 23 − 3): every segment but DATA fits in it
MAX_WINDOW = (1 << 32) - 1
MAX_OPEN_WINDOW_V2 = (1 << 24) - 1  # version 2's OPEN gives a byte of the window to the mode


def ahead(a: int, b: int) -> int:
    """How far sequence number ``a`` is after ``b`` (negative: before), within
    half the sequence space either way.

    >>> ahead(1, 0xFFFF), ahead(0xFFFF, 1)
    (2, -2)
    """
    d = (a - b) % SEQ_SPACE
    return d - SEQ_SPACE if d >= SEQ_SPACE // 2 else d


class CloseCode(enum.IntEnum):
    """Why a link was closed (the CLOSE segment's code)."""

    NORMAL = 0  # closed by its user
    PROTOCOL = 1  # the peer broke the link protocol
    TIMEOUT = 2  # the peer stopped acknowledging
    VERSION = 3  # no common link protocol version
    BUSY = 4  # the node takes no more connections
    MODE = 5  # the node does not serve the mode the central opened in


class Mode(enum.IntEnum):
    """What a link carries (version 2's OPEN says it; version 1 is always sync)."""

    SYNC = 0  # the Noise channel, then sync (docs/protocol.md)
    MULE = 1  # plain HTTP/1.1: the mule exchange (docs/field.md)


@dataclass(frozen=True)
class Open:
    """OPEN. Version 1 carries no mode (sync); version 2 and later put the mode
    in the window's top byte, so OPEN stays 8 bytes and a version-1 node reads
    the version it does not speak (and answers CLOSE code 3) rather than a
    malformed segment."""

    version: int
    max_value: int
    window: int
    mode: int = Mode.SYNC

    def encode(self) -> bytes:
        if self.version < 2:
            return struct.pack(">BBHI", 0x01, self.version, self.max_value, self.window)
        window = min(self.window, MAX_OPEN_WINDOW_V2)
        return struct.pack(">BBHI", 0x01, self.version, self.max_value, self.mode << 24 | window)


@dataclass(frozen=True)
class Data:
    seq: int
    payload: bytes

    def encode(self) -> bytes:
        return struct.pack(">BH", 0x02, self.seq) + self.payload


@dataclass(frozen=True)
class Fin:
    seq: int

    def encode(self) -> bytes:
        return struct.pack(">BH", 0x03, self.seq)


@dataclass(frozen=True)
class _Credit:
    """ACK and NAK: the next seq expected and the credit granted (a NAK also
    says a later segment arrived before ``next``); only the type byte differs."""

    KIND: ClassVar[int]
    next: int
    window: int

    def encode(self) -> bytes:
        return struct.pack(">BHI", self.KIND, self.next, self.window)


@dataclass(frozen=True)
class Ack(_Credit):
    KIND = 0x04


@dataclass(frozen=True)
class Nak(_Credit):
    KIND = 0x05


@dataclass(frozen=True)
class Probe:
    def encode(self) -> bytes:
        return b"\x06"


@dataclass(frozen=True)
class Close:
    code: int
    reason: str

    def encode(self, limit: int = MIN_VALUE) -> bytes:
        """The segment, the reason cut (at a character boundary) to fit ``limit``."""
        reason = self.reason.encode("utf-8")[: max(0, limit - 2)]
        return bytes([0x07, self.code]) + reason.decode("utf-8", "ignore").encode("utf-8")


Segment = Open | Data | Fin | Ack | Nak | Probe | Close


def decode(value: bytes) -> Segment:
    """One GATT value → its segment; :class:`~agent.errors.RemoteProtocolError`
    names what is wrong with a malformed one."""
    if not value:
        raise RemoteProtocolError("an empty GATT value is not a link segment")
    kind, size = value[0], len(value)
    try:
        if kind == 0x02 and size > DATA_HEADER:
            return Data(int.from_bytes(value[1:3], "big"), bytes(value[3:]))
        if kind in (Ack.KIND, Nak.KIND) and size == 7:
            return (Ack if kind == Ack.KIND else Nak)(*struct.unpack(">HI", value[1:]))
        if kind == 0x03 and size == 3:
            return Fin(int.from_bytes(value[1:3], "big"))
        if kind == 0x01 and size == 8:
            version, max_value, window = struct.unpack(">BHI", value[1:])
            if version < 2:
                return Open(version, max_value, window)
            return Open(version, max_value, window & MAX_OPEN_WINDOW_V2, window >> 24)
        if kind == 0x06 and size == 1:
            return Probe()
        if kind == 0x07 and size >= 2:
            return Close(value[1], bytes(value[2:]).decode("utf-8", "replace"))
    except struct.error:  # pragma: no cover - sizes are checked above
        pass
    names = {1: "OPEN", 2: "DATA", 3: "FIN", 4: "ACK", 5: "NAK", 6: "PROBE", 7: "CLOSE"}
    if kind in names:
        raise RemoteProtocolError(f"a {names[kind]} segment of {size} bytes is malformed")
    raise RemoteProtocolError(f"unknown link segment type 0x{kind:02x}")
