"""The frame layer of the serial bridge: header, CRC-32 and COBS, as pure functions.

A frame on the wire (``firmware-bridge/PROTOCOL.md`` has the byte layouts)::

    00 | COBS( header · payload · crc32 ) | 00

    header  = version<<4 | type (1 byte) · boot id (u16 LE) · counter (u16 LE)
    crc32   = CRC-32/ISO-HDLC (zlib's) of header · payload, u32 LE

The ``00`` before each frame flushes whatever line noise preceded it, as SLIP
does, so noise costs at most the frame it touches. Nothing here does I/O and
nothing keeps state: :func:`build_frame` and :func:`parse_frame` are inverse,
and :class:`~lichen_serial.frames.FrameDecoder` runs a byte stream through
:func:`parse_frame` one delimited chunk at a time.

>>> wire = build_frame(FrameType.READINGS, boot_id=0x1234, counter=7, payload=b"\\x00\\x02")
>>> wire.hex(" ")
'00 05 12 34 12 07 01 06 02 55 8a 3f 9b 00'
>>> parse_frame(wire[1:-1])
Frame(type=2, boot_id=4660, counter=7, payload=b'\\x00\\x02')
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum
from typing import NamedTuple

from .errors import EncodeError, FrameError

__all__ = [
    "CRC_SIZE",
    "HEADER_SIZE",
    "MAX_BODY",
    "MAX_CHUNK",
    "MAX_PAYLOAD",
    "MAX_WIRE",
    "VERSION",
    "Frame",
    "FrameType",
    "build_frame",
    "cobs_decode",
    "cobs_encode",
    "crc32",
    "parse_frame",
]

VERSION = 1
HEADER_SIZE = 5
CRC_SIZE = 4
#: header · payload · CRC, before COBS. Below 254, so COBS adds exactly one byte
#: and the C encoder can work in place in one buffer.
MAX_BODY = 250
MAX_PAYLOAD = MAX_BODY - HEADER_SIZE - CRC_SIZE  # 241
#: the longest COBS chunk between two delimiters
MAX_CHUNK = MAX_BODY + 1
#: the longest frame on the wire, both delimiters included
MAX_WIRE = MAX_CHUNK + 2
_HEADER = struct.Struct("<BHH")
_CRC = struct.Struct("<I")


class FrameType(IntEnum):
    """The low nibble of a frame's first byte. Other values are reserved: a
    decoder reports them (``UnknownFrame``) and skips them."""

    DESCRIBE = 1  #: device → host: one channel's name, unit, resolution
    READINGS = 2  #: device → host: values of some channels, sampled together
    REQUEST = 3  #: host → device: "describe yourself"


class Frame(NamedTuple):
    """A frame whose CRC matched: its header fields and its payload (not yet parsed)."""

    type: int
    boot_id: int
    counter: int
    payload: bytes


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC: reflected polynomial 0x04C11DB7, init and xor-out
    0xFFFFFFFF — zlib's, Ethernet's, and the RP2040 DMA sniffer's.

    >>> hex(crc32(b"123456789"))
    '0xcbf43926'
    """
    return zlib.crc32(data)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` with every ``00`` removed,
    at most one byte longer per 254.

    >>> cobs_encode(b"\\x11\\x00\\x22").hex(" ")
    '02 11 02 22'
    """
    out = bytearray()
    start, length = 0, len(data)
    while True:
        zero = data.find(0, start, start + 254)
        if zero >= 0:  # a block ended by a zero, which the code byte stands for
            out.append(zero - start + 1)
            out += data[start:zero]
            start = zero + 1
            continue
        end = min(start + 254, length)  # the last block, or 254 bytes without a zero
        out.append(end - start + 1)
        out += data[start:end]
        if end == length:
            return bytes(out)
        start = end


def cobs_decode(chunk: bytes) -> bytes:
    """Undo :func:`cobs_encode`; FrameError("cobs") if a code byte points past
    the end of ``chunk`` or ``chunk`` holds a ``00``.

    >>> cobs_decode(bytes.fromhex("02 11 02 22")).hex(" ")
    '11 00 22'
    """
    out = bytearray()
    position, length = 0, len(chunk)
    while position < length:
        code = chunk[position]
        end = position + code
        if code == 0 or end > length:
            raise FrameError("cobs", f"code byte {code} at offset {position} of {length}")
        block = chunk[position + 1 : end]
        if 0 in block:
            raise FrameError("cobs", f"a 00 byte inside the block at offset {position}")
        out += block
        position = end
        if code != 0xFF and position < length:
            out.append(0)
    return bytes(out)


def build_frame(frame_type: int, *, boot_id: int, counter: int, payload: bytes) -> bytes:
    """One complete frame on the wire, both ``00`` delimiters included."""
    if not 0 <= frame_type <= 0x0F:
        raise EncodeError(f"frame type {frame_type} must fit in 4 bits")
    if not (0 <= boot_id <= 0xFFFF and 0 <= counter <= 0xFFFF):
        raise EncodeError(f"boot id {boot_id} and counter {counter} must fit in 16 bits")
    if len(payload) > MAX_PAYLOAD:
        raise EncodeError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = _HEADER.pack(VERSION << 4 | frame_type, boot_id, counter) + payload
    body += _CRC.pack(crc32(body))
    return b"\x00" + cobs_encode(body) + b"\x00"


def parse_frame(chunk: bytes) -> Frame:
    """The frame in ``chunk`` (the bytes between two ``00`` delimiters).

    Checks, in this order, and raises :class:`FrameError` with the reason of
    the first that fails: size, COBS, length, CRC, version. The payload is
    returned unparsed (see :mod:`lichen_serial.payloads`)."""
    if len(chunk) > MAX_CHUNK:
        raise FrameError("oversize", f"{len(chunk)} bytes, a frame has at most {MAX_CHUNK}")
    body = cobs_decode(chunk)
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise FrameError("short", f"{len(body)} bytes, a frame has at least 9")
    (expected,) = _CRC.unpack_from(body, len(body) - CRC_SIZE)
    content = body[:-CRC_SIZE]
    if crc32(content) != expected:
        raise FrameError("crc", f"computed {crc32(content):08x}, frame says {expected:08x}")
    first, boot_id, counter = _HEADER.unpack_from(content)
    if first >> 4 != VERSION:
        raise FrameError("version", f"version {first >> 4}; this decoder reads version 1")
    return Frame(first & 0x0F, boot_id, counter, content[HEADER_SIZE:])
