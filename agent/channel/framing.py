"""The channel's byte formats: length-prefixed frames, and the records inside transport messages.

**Frames.** On the stream, every Noise message (handshake or transport) is
preceded by its length as 2 bytes, big-endian; Noise messages are at most
65535 bytes, so the prefix always fits. :class:`FrameReader` cuts frames out of
chunks split at any byte boundary, and refuses a length that cannot be right
*as soon as the prefix arrives*, so garbage never makes it buffer much::

    >>> reader = FrameReader()
    >>> reader.feed(encode_frame(b"abc") + b"\\x00")
    >>> reader.next_frame(min_len=1, max_len=10), reader.next_frame(min_len=1, max_len=10)
    (b'abc', None)

**Records.** After the handshake, each transport message's plaintext is one
record: a type byte, then the body. ``DATA`` ends an application message,
``MORE`` is a fragment with more to follow, ``CLOSE`` is the authenticated
close notice, and ``READY`` is the responder's confirmation that it accepted
the initiator (its first transport message). A message of any size becomes
fragments of at most :data:`MAX_RECORD_BODY` bytes, so each Noise message is
at most 65535 bytes (payload ≤ 65519); :class:`Reassembler` puts them back
together and enforces the receiver's message size limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum

from .events import ChannelRejected
from .noise import MAX_MESSAGE_LEN
from .primitives import TAG_LEN

__all__ = [
    "HEADER_LEN",
    "MAX_RECORD_BODY",
    "FrameReader",
    "Reassembler",
    "RecordType",
    "encode_frame",
    "fragment",
    "parse_record",
]

HEADER_LEN = 2
MAX_PAYLOAD = MAX_MESSAGE_LEN - TAG_LEN  # 65519: Noise payload in one transport message
MAX_RECORD_BODY = MAX_PAYLOAD - 1  # 65518: the payload less the record type byte
MIN_TRANSPORT_FRAME = TAG_LEN + 1


class RecordType(IntEnum):
    """The first plaintext byte of every transport message::

    >>> parse_record(bytes([RecordType.DATA]) + b"hi")
    (<RecordType.DATA: 0>, b'hi')
    """

    DATA = 0
    MORE = 1
    CLOSE = 2
    READY = 3


def encode_frame(message: bytes) -> bytes:
    """Prefix one Noise message with its 2-byte big-endian length."""
    if len(message) > MAX_MESSAGE_LEN:
        raise ValueError(f"a Noise message is at most {MAX_MESSAGE_LEN} bytes")
    return len(message).to_bytes(HEADER_LEN, "big") + message


class FrameReader:
    """Cuts length-prefixed frames out of a byte stream, holding at most one partial frame.

    The caller says, for each frame, which lengths are acceptable in its state;
    any other prefix is a :class:`ChannelRejected` before its body is read. The
    reader never holds more than ``HEADER_LEN + max_len`` bytes unless the caller
    feeds more than that at once and stops asking for frames::

        reader.feed(chunk)
        while (frame := reader.next_frame(min_len=17, max_len=65535)) is not None:
            handle(frame)
    """

    __slots__ = ("_buffer", "_eof")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer)

    @property
    def at_eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the stream ended."""
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_frame(self, *, min_len: int, max_len: int) -> bytes | None:
        """The next whole frame's body, or ``None`` until more bytes arrive."""
        if len(self._buffer) < HEADER_LEN:
            return None
        length = int.from_bytes(self._buffer[:HEADER_LEN], "big")
        if not min_len <= length <= max_len:
            expected = f"{min_len}" if min_len == max_len else f"{min_len}–{max_len}"
            raise ChannelRejected(
                f"the peer announced a {length}-byte message where {expected} bytes fit"
            )
        end = HEADER_LEN + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER_LEN:end])
        del self._buffer[:end]
        return body


def fragment(data: bytes, max_body: int = MAX_RECORD_BODY) -> Iterator[bytes]:
    """The record plaintexts carrying one application message: ``MORE``…, then ``DATA``."""
    if not 1 <= max_body <= MAX_RECORD_BODY:
        raise ValueError(f"a record body is 1–{MAX_RECORD_BODY} bytes")
    view = memoryview(data)
    while len(view) > max_body:
        yield bytes([RecordType.MORE]) + view[:max_body]
        view = view[max_body:]
    yield bytes([RecordType.DATA]) + view


def parse_record(plaintext: bytes) -> tuple[RecordType, bytes]:
    """Split a decrypted transport payload into its type and body, checking both."""
    if not plaintext:
        raise ChannelRejected("a transport message carries no record type")
    try:
        kind = RecordType(plaintext[0])
    except ValueError:
        raise ChannelRejected(f"unknown record type {plaintext[0]}") from None
    body = plaintext[1:]
    if kind in (RecordType.CLOSE, RecordType.READY) and body:
        raise ChannelRejected(f"a {kind.name} record carries {len(body)} unexpected bytes")
    if kind is RecordType.MORE and not body:
        raise ChannelRejected("an empty MORE fragment")
    return kind, body


class Reassembler:
    """Joins ``MORE`` fragments and the final ``DATA`` record into one message.

    A message that would exceed ``max_message_size`` is refused as soon as the
    fragment that crosses the limit arrives, so memory stays bounded::

        r = Reassembler(max_message_size=1 << 20)
        r.add(RecordType.MORE, b"hel")   # None: more to come
        r.add(RecordType.DATA, b"lo")    # b"hello"
    """

    __slots__ = ("_parts", "_size", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be at least 1 byte")
        self.max_message_size = max_message_size
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held so far."""
        return self._size

    def add(self, kind: RecordType, body: bytes) -> bytes | None:
        """Take one DATA or MORE record; return the whole message once it is complete."""
        self._size += len(body)
        if self._size > self.max_message_size:
            raise ChannelRejected(
                f"the peer sent a message larger than the {self.max_message_size}-byte limit"
            )
        self._parts.append(body)
        if kind is RecordType.MORE:
            return None
        message = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        if not message:
            raise ChannelRejected("the peer sent an empty message")
        return message
