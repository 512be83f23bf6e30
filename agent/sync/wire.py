"""Bytes on the wire: frames and the CBOR layout of every message.

A frame is a length prefix — an unsigned LEB128 varint in shortest form —
followed by that many bytes holding one canonical CBOR array, the message::

    frame   = length: uvarint, message: bytes .size length
    message = [type: uint, field, …]      ; canonical CBOR (docs/format.md rules)

>>> frame_message(WantEnd()).hex()
'028104'
>>> decode_message(bytes.fromhex("8104"))
WantEnd()

:class:`FrameReader` cuts a byte stream into frame bodies, refusing a frame
longer than ``max_frame`` as soon as its prefix says so — before buffering
it. :func:`decode_message` refuses anything but the exact layouts below. Both
raise :class:`~agent.errors.RemoteProtocolError` and nothing else.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from .. import encoding
from ..entry import DEFAULT_MAX_ENTRY_SIZE, Entry, _bstr_header
from ..entry_lazy import decode_lazily, decode_strictly
from ..errors import EncodingError, EntryError, LocalProtocolError, RemoteProtocolError
from .events import (
    PROTOCOL_VERSION,
    AnyMessage,
    Bye,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    Have,
    HaveEnd,
    Hello,
    Live,
    Message,
    Want,
    WantEnd,
)

__all__ = [
    "FRAME_OVERHEAD",
    "LAYOUTS",
    "FrameReader",
    "check_entry",
    "decode_message",
    "encode_message",
    "frame_message",
    "max_frame_for",
    "uvarint",
]

FRAME_OVERHEAD = 64
"""Bytes a frame may hold beyond the largest entry (the ENTRY array's header)."""

LAYOUTS: dict[int, tuple[type[Message], tuple[str, ...]]] = {
    0: (Hello, ("version", "node", "role", "since", "change")),
    1: (Have, ("author", "from_seq", "to_seq", "head_hash")),  # head_hash may be left out
    2: (HaveEnd, ("change",)),
    3: (Want, ("author", "from_seq", "to_seq")),
    4: (WantEnd, ()),
    5: (EntryData, ("entry",)),  # travels as entry.raw, a byte string
    6: (Credit, ("entries", "bytes")),
    7: (Done, ("change",)),
    8: (Live, ()),
    9: (Bye, ("reason",)),
    10: (ErrorMessage, ("reason",)),
}
"""Message type → (event class, fields after the type, in order)."""

# head byte of a byte string → bytes its head takes (length inline, or 1/2/4 more bytes)
_BSTR_HEAD_SIZES = {**dict.fromkeys(range(0x40, 0x58), 1), 0x58: 2, 0x59: 3, 0x5A: 5}

# an ENTRY's byte-string head, by the entry's length (twice per ENTRY: remembered)
_entry_head = functools.lru_cache(maxsize=1024)(_bstr_header)


def max_frame_for(max_entry_size: int) -> int:
    """The largest frame a connection accepts when entries are capped at ``max_entry_size``."""
    return max_entry_size + FRAME_OVERHEAD


def uvarint(value: int) -> bytes:
    """``value`` as an unsigned LEB128 varint (7 bits per byte, low group first)."""
    if value < 0:
        raise ValueError("a varint is unsigned")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_message(message: Message) -> bytes:
    """The canonical CBOR array for ``message`` (without the length prefix)."""
    if isinstance(message, EntryData):  # the hot message: [5, raw], built by hand
        raw = message.entry.raw
        return b"\x82\x05" + _entry_head(len(raw)) + raw
    cls, names = LAYOUTS[message.TYPE]
    values = [getattr(message, name) for name in names]
    if isinstance(message, Have) and message.head_hash is None:
        values.pop()
    return encoding.dumps([cls.TYPE, *values], checked=True)


def frame_message(message: Message) -> bytes:
    """``message`` as one frame: its length as a varint, then its CBOR."""
    if type(message) is EntryData:  # the hot message: everything but the entry remembered
        raw = message.entry.raw
        return _entry_frame_head(len(raw)) + raw
    body = encode_message(message)
    return uvarint(len(body)) + body


@functools.lru_cache(maxsize=1024)
def _entry_frame_head(size: int) -> bytes:
    """What precedes an entry of ``size`` bytes in its ENTRY frame."""
    head = b"\x82\x05" + _entry_head(size)
    return uvarint(len(head) + size) + head


def decode_message(
    body: bytes, *, max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE, strict: bool = True
) -> AnyMessage:
    """Parse one frame body into its event; raise RemoteProtocolError naming what is wrong.

    ``strict=False`` decodes an ENTRY's content without proving it is the one
    canonical encoding: for a receiver that proves it elsewhere (worker
    processes), then refuses the frame with :func:`check_entry`'s words."""
    raw = _entry_payload(body)
    if raw is not None:  # the hot message, parsed by hand
        return _decode_entry(raw, max_entry_size, strict)
    return _decode_any(body, max_entry_size, strict)


def _entry_payload(body: bytes) -> bytes | None:
    """The entry bytes if ``body`` is the canonical CBOR of ``[5, entry]``, else None.

    That encoding is exactly ``82 05``, the byte string's head in shortest form,
    then the byte string to the end of the frame; anything else (not an ENTRY,
    or not canonical) takes :func:`_decode_any`, which decides and explains."""
    if body[:2] != b"\x82\x05" or len(body) < 3:
        return None
    size = _BSTR_HEAD_SIZES.get(body[2])
    if size is None:
        return None
    start = 2 + size
    if len(body) < start or body[2:start] != _entry_head(len(body) - start):
        return None
    return bytes(body[start:])


def _decode_any(body: bytes, max_entry_size: int, strict: bool = True) -> AnyMessage:
    try:
        items = encoding.loads(body, where="message")
    except EncodingError as exc:
        raise RemoteProtocolError(
            f"garbage: the frame is not one canonical CBOR value ({exc})"
        ) from None
    if type(items) is not list or not items:
        raise RemoteProtocolError(
            f"garbage: a message is a non-empty CBOR array, not {type(items).__name__}"
        )
    kind = items[0]
    if type(kind) is not int or kind not in LAYOUTS:
        raise RemoteProtocolError(f"unknown message type {_show(kind)}")
    cls, names = LAYOUTS[kind]
    fields = items[1:]
    if cls is Hello and fields and fields[0] != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            f"wrong version: the peer speaks sync protocol version {_show(fields[0])}; "
            f"this node speaks version {PROTOCOL_VERSION}"
        )
    low = len(names) - 1 if cls is Have else len(names)
    if not low <= len(fields) <= len(names):
        expected = f"{low} or {len(names)}" if low != len(names) else str(len(names))
        raise RemoteProtocolError(f"{cls.NAME} has {len(fields)} fields; expected {expected}")
    if cls is EntryData:
        return _decode_entry(fields[0], max_entry_size, strict)
    if cls is Have and len(fields) == 4 and fields[3] is None:  # absent, never null
        raise RemoteProtocolError("HAVE head_hash must be 32 bytes when present, not None")
    try:
        return cast(AnyMessage, cls(**dict(zip(names, fields, strict=False))))
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"{exc}") from None


def _decode_entry(raw: Any, max_entry_size: int, strict: bool = True) -> EntryData:
    if type(raw) is not bytes:
        raise RemoteProtocolError(f"ENTRY must carry the entry as bytes, not {type(raw).__name__}")
    return EntryData(entry=check_entry(raw, max_entry_size, strict=strict))


def check_entry(raw: bytes, max_entry_size: int, *, strict: bool = True) -> Entry:
    """Decode an ENTRY's bytes, or raise the RemoteProtocolError that refuses its frame.

    ``strict=False``: the body is decoded when first read (the caller proves
    the bytes before anything reads it: :mod:`agent.entry_lazy`)."""
    try:
        if not strict:
            return decode_lazily(raw, max_size=max_entry_size)
        return decode_strictly(raw, max_size=max_entry_size)
    except EntryError as exc:
        raise RemoteProtocolError(f"ENTRY does not hold a valid entry: {exc}") from None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FrameReader:
    """Cuts a byte stream into frame bodies; strict about the length prefix.

    Feed bytes with :meth:`feed`, the end of the stream with :meth:`feed_eof`,
    then call :meth:`next_frame` until it returns ``None`` (more bytes needed,
    or the stream ended cleanly — see :attr:`eof`)::

        reader = FrameReader(max_frame=16 * 1024 + 64)
        reader.feed(bytes.fromhex("02810402"))
        reader.next_frame()  # b'\\x81\\x04'; then None: one byte of the next frame waits
    """

    def __init__(self, max_frame: int) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self.max_frame = max_frame
        self._max_prefix = len(uvarint(max_frame))
        self._buffer = bytearray()
        self._start = 0  # bytes before this offset are consumed
        self.eof = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as frames."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        if self.eof:
            raise LocalProtocolError("data fed to a FrameReader after the end of the stream")
        self._buffer += data

    def feed_eof(self) -> None:
        self.eof = True

    def next_frame(self) -> bytes | None:
        """The next frame's body, or ``None``. Raises RemoteProtocolError for a bad
        prefix, an oversized frame, or a stream that ended inside a frame."""
        buffer, start = self._buffer, self._start
        end = len(buffer)
        length = shift = 0
        pos = start
        while True:
            if pos == end:
                self._check_truncated(None)
                return None
            byte = buffer[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if pos - start >= self._max_prefix:
                raise RemoteProtocolError(
                    f"oversized frame: its length prefix is longer than {self._max_prefix} bytes; "
                    f"the limit is {self.max_frame} bytes"
                )
        if pos - start > 1 and byte == 0:
            raise RemoteProtocolError("bad frame: the length prefix is not in shortest form")
        if length == 0:
            raise RemoteProtocolError("bad frame: a frame of length 0 holds no message")
        if length > self.max_frame:
            raise RemoteProtocolError(
                f"oversized frame: {length} bytes announced; the limit is {self.max_frame}"
            )
        if end - pos < length:
            self._check_truncated((end - pos, length))
            return None
        body = bytes(buffer[pos : pos + length])
        self._start = pos + length
        if self._start == len(buffer):
            buffer.clear()
            self._start = 0
        elif self._start > 65536 and self._start * 2 > len(buffer):
            del buffer[: self._start]
            self._start = 0
        return body

    def _check_truncated(self, have_need: tuple[int, int] | None) -> None:
        if not self.eof or self.buffered == 0:
            return
        if have_need is None:
            raise RemoteProtocolError("truncated frame: the stream ended inside a length prefix")
        have, need = have_need
        raise RemoteProtocolError(
            f"truncated frame: the stream ended after {have} of its {need} bytes"
        )
