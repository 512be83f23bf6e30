"""The sans-IO stream decoder: bytes in, events out, nothing else.

:class:`FrameDecoder` buffers whatever the serial port produced — whole
frames, half a frame, line noise, a device that rebooted halfway through a
frame — and hands out one event at a time. It
never performs I/O and never raises on any input: a chunk that is not a
frame becomes a ``BadFrame`` event and a count in :class:`DecoderStats`,
and decoding resumes at the next ``00`` delimiter. A reading is only ever
produced from a frame whose CRC-32 matched.

It also follows the link: the header's boot id and counter let it tell lost
frames (a gap in the counter) from a reboot (a new boot id), which it
announces before the frame that revealed them.

The events are typed, immutable dataclasses. Frames whose CRC matched become
``Describe``, ``Readings``, ``Request`` or ``UnknownFrame``; before such a
frame may come ``Reboot`` or ``FramesLost``; anything that was not a frame
is a ``BadFrame`` with a reason. ``NEED_DATA`` (the project's one, from
:mod:`agent.sansio`) means "feed me more bytes"::

    decoder.receive_data(chunk)
    while (event := decoder.next_event()) is not NEED_DATA:
        handle(event)
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from agent.sansio import NEED_DATA, NeedData

from .errors import FrameError
from .framing import MAX_CHUNK, Frame, FrameType, parse_frame
from .payloads import Channel, RawValue, parse_describe, parse_readings, parse_request

__all__ = [
    "NEED_DATA",
    "BadFrame",
    "DecoderStats",
    "Describe",
    "Event",
    "FrameDecoder",
    "FramesLost",
    "NeedData",
    "Readings",
    "Reboot",
    "Request",
    "UnknownFrame",
]

# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True, kw_only=True)
class Describe:
    """Channel ``id`` of the device's ``count`` channels is ``channel``."""

    boot_id: int
    counter: int
    count: int
    id: int
    channel: Channel


@dataclass(frozen=True, slots=True, kw_only=True)
class Readings:
    """Values the device sampled together, by channel id (not yet scaled)."""

    boot_id: int
    counter: int
    values: tuple[RawValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A host's request (seen by a device, or by a host on a loopback)."""

    boot_id: int
    counter: int
    what: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownFrame:
    """A valid frame of a type this decoder does not know (a newer device)."""

    boot_id: int
    counter: int
    type: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FramesLost:
    """``count`` frames between the previous frame and this one never arrived."""

    boot_id: int
    count: int
    expected: int
    received: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reboot:
    """The device restarted: its boot id changed (or, for a device that cannot
    vary it, its counter went backwards). Not counted as loss."""

    previous_boot_id: int
    boot_id: int
    counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BadFrame:
    """A delimited chunk of ``size`` bytes that was not a frame: ``reason`` is
    ``cobs``, ``short``, ``oversize``, ``crc``, ``version``, ``payload`` or
    ``truncated`` (cut off when the connection was lost)."""

    reason: str
    size: int
    detail: str = ""


Event = Describe | Readings | Request | UnknownFrame | FramesLost | Reboot | BadFrame


# ------------------------------------------------------------------ decoder


@dataclass(slots=True)
class DecoderStats:
    """Running totals since the decoder was made."""

    bytes: int = 0
    #: frames whose CRC matched (of any type, including ones with a bad payload)
    frames: int = 0
    #: frames the counter says were sent but never arrived
    lost: int = 0
    reboots: int = 0
    #: chunks whose CRC did not match
    crc_errors: int = 0
    #: chunks refused for any other reason (see ``reasons``)
    malformed: int = 0
    #: refused chunks by reason (``crc`` included)
    reasons: Counter[str] = field(default_factory=Counter)


class FrameDecoder:
    """Turn a byte stream from a bridge device into events. Sans-IO, h11-style.

    >>> from lichen_serial.payloads import FrameEncoder, RawValue
    >>> device = FrameEncoder(boot_id=0x1234)
    >>> first, second = device.readings([RawValue(0, 2137)]), device.readings([RawValue(0, 2138)])
    >>> decoder = FrameDecoder()
    >>> decoder.receive_data(b"noise" + first + second[:4])
    >>> decoder.next_event()
    BadFrame(reason='cobs', size=5, detail='code byte 110 at offset 0 of 5')
    >>> event = decoder.next_event()
    >>> event.boot_id, event.counter, event.values
    (4660, 0, (RawValue(channel=0, raw=2137, status=<Status.OK: 0>),))
    >>> decoder.next_event()
    NEED_DATA
    >>> decoder.receive_data(second[4:])
    >>> decoder.next_event().values[0].raw
    2138
    """

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._buffer = bytearray()  # bytes after the last delimiter decoded
        self._oversize = 0  # > 0: skipping a chunk that grew past MAX_CHUNK
        self._events: deque[Event] = deque()
        self._boot_id: int | None = None
        self._counter = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded (a frame still arriving)."""
        return len(self._buffer)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the port. Any bytes at all; never raises."""
        self.stats.bytes += len(data)
        self._buffer += data

    def next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        """The next event, or :data:`NEED_DATA` until more bytes arrive."""
        events = self._events
        if not events:
            self._decode_buffered()
            if not events:
                return NEED_DATA
        return events.popleft()

    def connection_lost(self) -> None:
        """The port closed: a frame cut off in the middle is counted as
        ``truncated``. The link state stays, so frames sent while the device
        was away are counted as lost, and a reboot meanwhile is recognised."""
        self._decode_buffered()  # complete chunks first, as if read normally
        if self._buffer or self._oversize:
            size = len(self._buffer) + self._oversize
            self._refuse("truncated", size, "the connection ended inside a frame")
        self._buffer.clear()
        self._oversize = 0

    # ----------------------------------------------------------------- chunks

    def _decode_buffered(self) -> None:
        """Decode every complete chunk in the buffer, in order, into ``_events``.
        What follows the last delimiter stays, unless it has outgrown any frame."""
        buffer = self._buffer
        if 0 in buffer:
            *chunks, tail = buffer.split(b"\x00")
            self._buffer = buffer = tail
            for chunk in chunks:
                if self._oversize or len(chunk) > MAX_CHUNK:
                    size, self._oversize = self._oversize + len(chunk), 0
                    self._refuse("oversize", size, f"{size} bytes without a delimiter")
                elif chunk:  # an empty chunk is just two delimiters in a row
                    self._decode(bytes(chunk))
        if len(buffer) > MAX_CHUNK:  # no delimiter where one must be: stop keeping it
            self._oversize += len(buffer)
            buffer.clear()

    def _refuse(self, reason: str, size: int, detail: str) -> None:
        self.stats.reasons[reason] += 1
        if reason == "crc":
            self.stats.crc_errors += 1
        else:
            self.stats.malformed += 1
        self._events.append(BadFrame(reason=reason, size=size, detail=detail))

    def _decode(self, chunk: bytes) -> None:
        try:
            frame = parse_frame(chunk)
        except FrameError as exc:
            self._refuse(exc.reason, len(chunk), exc.detail)
            return
        self.stats.frames += 1
        self._follow(frame)
        try:
            self._events.append(_event_for(frame))
        except FrameError as exc:
            self._refuse(exc.reason, len(chunk), exc.detail)

    def _follow(self, frame: Frame) -> None:
        """Compare the header with the previous frame's: reboot, loss, or in order."""
        previous, self._boot_id = self._boot_id, frame.boot_id
        last, self._counter = self._counter, frame.counter
        if previous is None:
            return
        gap = (frame.counter - last - 1) & 0xFFFF
        if previous != frame.boot_id or gap >= 0x8000:  # new boot, or counter went back
            self.stats.reboots += 1
            self._events.append(
                Reboot(previous_boot_id=previous, boot_id=frame.boot_id, counter=frame.counter)
            )
        elif gap:
            self.stats.lost += gap
            self._events.append(
                FramesLost(
                    boot_id=frame.boot_id,
                    count=gap,
                    expected=(last + 1) & 0xFFFF,
                    received=frame.counter,
                )
            )


def _event_for(frame: Frame) -> Event:
    """The event for a frame whose CRC matched; FrameError("payload") if malformed."""
    boot_id, counter = frame.boot_id, frame.counter
    if frame.type == FrameType.READINGS:
        return Readings(boot_id=boot_id, counter=counter, values=parse_readings(frame.payload))
    if frame.type == FrameType.DESCRIBE:
        described = parse_describe(frame.payload)
        return Describe(
            boot_id=boot_id,
            counter=counter,
            count=described.count,
            id=described.id,
            channel=described.channel,
        )
    if frame.type == FrameType.REQUEST:
        return Request(boot_id=boot_id, counter=counter, what=parse_request(frame.payload))
    return UnknownFrame(boot_id=boot_id, counter=counter, type=frame.type, payload=frame.payload)
