"""The sans-IO BLE link core: a reliable byte stream over unreliable GATT values.

:class:`GattLink` turns GATT values in (rx writes on the peripheral,
tx notifications on the central) into stream events out, and stream bytes in
into GATT values out — no Bluetooth stack, no clock, no event loop inside.
Every back end (Bumble, bleak, bluezero, a test's memory pair) feeds it the
same four things: *a value arrived*, *the ATT MTU is N*, *the connection is
gone*, *the time is now*; and writes what :meth:`~GattLink.data_to_send`
returns, each item as one GATT value. ``docs/ble.md`` specifies the
segments and the rules; the asyncio shell is :mod:`lichen_ble.stream`::

    link = GattLink(Role.CENTRAL, mtu=517)
    link.start(now)                          # the central opens (after subscribing)
    for value in link.data_to_send(now):     # each one write without response
        write(value)
    link.receive_data(notification, now)     # each tx notification
    event = link.next_event()                # LinkOpened, DataReceived, EndOfStream,
                                             # LinkClosed, or NEED_DATA
    link.handle_timer(now)                   # at link.next_timer()

Reliability never rests on a write without response arriving: segments are
numbered, the receiver takes them only in order and acknowledges them
(ACK), says NAK at the first gap, and the sender sends again what was not
acknowledged (go-back-N) after a NAK or a retransmission timeout (RFC 6298
estimate). Flow control is credit: the receiver's ACK carries how many bytes
it will still buffer. A peer that acknowledges nothing for ``link_timeout``
seconds while something waits ends the link, as does any segment that breaks
the rules (``LinkClosed`` with the reason). What comes out is the exact byte
stream that went in, or a clean error — never silent corruption.

This module is the link itself: OPEN and CLOSE, the events, the timers and
the rules that end a link. Its two halves are their own modules: sending
(:class:`~lichen_ble.sending.Sender`: segmentation, credit spent, go-back-N)
and receiving (:class:`~lichen_ble.receiving.Receiver`: reassembly, ACK and
NAK, credit granted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from typing import Literal

from agent.errors import RemoteProtocolError, TransportError
from agent.sansio import NEED_DATA, NeedData

from .events import (
    MAX_VALUE,
    DataReceived,
    EndOfStream,
    LinkClosed,
    LinkEvent,
    LinkOpened,
    Role,
    value_size,
)
from .receiving import Receiver
from .rto import RetransmitTimer
from .segments import (
    MIN_VALUE,
    Ack,
    Close,
    CloseCode,
    Data,
    Fin,
    Mode,
    Nak,
    Open,
    Probe,
    decode,
)
from .sending import Sender
from .service import LINK_VERSION, MODES_VERSION

__all__ = [
    "MAX_VALUE",
    "NEED_DATA",
    "DataReceived",
    "EndOfStream",
    "GattLink",
    "LinkClosed",
    "LinkEvent",
    "LinkOpened",
    "Mode",
    "NeedData",
    "Role",
    "value_size",
]


class GattLink:
    """One end of a BLE link (see the module). ``mtu`` is the ATT MTU known so far
    (:meth:`mtu_changed` when the exchange ends, before :meth:`start`);
    ``buffer`` bounds the bytes received and not yet read (the credit granted),
    ``send_buffer`` the bytes accepted by :meth:`send` and not yet acknowledged.
    ``mode``: what the central opens the link for (:class:`Mode`; sync is
    version 1's OPEN, byte for byte; another mode is version 2's); ``modes``:
    what the peripheral serves (another is refused with CLOSE code 5), and
    :attr:`mode` is the one the central chose once open. ``max_version``: the
    highest link protocol version this end speaks (1: it refuses every mode
    but sync with CLOSE code 3, as a node of version 1 does)."""

    def __init__(
        self,
        role: Role,
        *,
        mtu: int = 23,
        buffer: int = 16384,
        send_buffer: int = 16384,
        rto_initial: float = 1.0,
        rto_min: float = 0.2,
        rto_max: float = 8.0,
        ack_delay: float = 0.02,
        link_timeout: float = 20.0,
        mode: Mode = Mode.SYNC,
        modes: Collection[Mode] = (Mode.SYNC,),
        max_version: int = MODES_VERSION,
    ) -> None:
        self.role = role
        self.mode, self.modes, self.max_version = mode, frozenset(modes), max_version
        self._version = LINK_VERSION if mode is Mode.SYNC else MODES_VERSION
        self.buffer, self.send_buffer = buffer, send_buffer
        self.ack_delay = ack_delay
        self.link_timeout = link_timeout
        self.max_value = value_size(mtu)  # what we accept (announced in OPEN)
        self.send_value = MIN_VALUE  # what we send, once open
        self.opened = False
        self.closed: LinkClosed | None = None
        self._started = False
        self._events: deque[LinkEvent] = deque()
        self._control: deque[bytes] = deque()  # OPEN, CLOSE: sent before anything else
        timer = RetransmitTimer(rto_initial, rto_min, rto_max)
        self._sender = Sender(send_buffer, timer)
        self._receiver = Receiver(buffer, ack_delay)

    @property
    def retransmissions(self) -> int:
        """Segments sent again so far (after a NAK or a timeout)."""
        return self._sender.retransmissions

    @property
    def eof(self) -> bool:
        """:meth:`send_eof` was called: nothing more may be sent."""
        return self._sender.eof

    # ------------------------------------------------------------ adapter inputs

    def mtu_changed(self, att_mtu: int) -> None:
        """The ATT MTU exchange ended; before OPEN this sets the value size."""
        if not self.opened:
            self.max_value = value_size(att_mtu)

    def start(self, now: float) -> None:
        """The central opens the link (call once subscribed to tx); the peripheral
        waits for the central's OPEN."""
        self._started = True
        self._sender.progress_at = now
        if self.role is Role.CENTRAL:
            self._control.append(self._open())
            self._sender.arm(now)

    def receive_data(self, value: bytes, now: float) -> None:
        """One GATT value from the peer (an rx write, or a tx notification)."""
        if self.closed is not None:
            return
        try:
            if len(value) > self.max_value:
                raise RemoteProtocolError(
                    f"a {len(value)}-byte value is longer than the {self.max_value} announced"
                )
            self._on_segment(decode(bytes(value)), now)
        except RemoteProtocolError as exc:
            self._fail(CloseCode.PROTOCOL, f"the peer broke the link protocol: {exc}")

    def connection_lost(self, reason: str) -> None:
        """The GATT connection is gone (disconnected, out of range)."""
        if self.closed is None:
            clean = self._receiver.fin and self._sender.finished
            self._finish(LinkClosed(f"the BLE connection ended: {reason}", clean=clean))

    def handle_timer(self, now: float) -> None:
        """Time passed: retransmit, probe, acknowledge or give up as due."""
        if self.closed is not None:
            return
        if self._waiting and now >= self._sender.progress_at + self.link_timeout:
            self._fail(
                CloseCode.TIMEOUT,
                f"the peer acknowledged nothing for {self.link_timeout:g} s",
            )
            return
        self._receiver.handle_timer(now)
        if self._sender.handle_timer(now, opening=not self.opened and self.role is Role.CENTRAL):
            self._control.append(self._open())

    # --------------------------------------------------------------- user inputs

    @property
    def send_room(self) -> int:
        """Bytes :meth:`send` takes now without going over ``send_buffer``."""
        return self._sender.room

    def send(self, data: bytes) -> None:
        """Queue bytes (the shell waits for :attr:`send_room` first)."""
        if self.closed is not None:
            raise TransportError(f"the link is closed: {self.closed.reason}")
        if self.eof:
            raise TransportError("send after send_eof")
        self._sender.queue(data)

    def send_eof(self) -> None:
        """Half-close: a FIN follows the bytes queued (idempotent)."""
        if self.closed is None:
            self._sender.eof = True

    def close(self, reason: str = "closed", code: CloseCode = CloseCode.NORMAL) -> None:
        """End the link now: CLOSE to the peer, then nothing more either way."""
        if self.closed is None:
            self._control.append(Close(code, reason).encode(self.send_value))
            clean = self._receiver.fin and self._sender.finished
            self._finish(LinkClosed(reason, clean=clean))

    # ------------------------------------------------------------------ outputs

    @property
    def stalled(self) -> bool:
        """Bytes wait to be sent and the peer grants no credit for them."""
        return self._sender.blocked

    @property
    def flushed(self) -> bool:
        """Everything sent (and the FIN, after :meth:`send_eof`) is acknowledged."""
        return self._sender.flushed

    def next_event(self, max_bytes: int = 65536) -> LinkEvent | Literal[NeedData.NEED_DATA]:
        """The next event: data (at most ``max_bytes``; reading it grants credit),
        then :class:`EndOfStream` once, then :class:`LinkClosed`; or :data:`NEED_DATA`."""
        if self._events and isinstance(self._events[0], LinkOpened):
            return self._events.popleft()
        received = self._receiver.next_event(max_bytes)
        if received is not None:
            return received
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` is due (None: nothing is timed)."""
        if self.closed is not None:
            return None
        times = [t for t in (self._sender.timer_at, self._receiver.ack_at) if t is not None]
        if self._waiting:
            times.append(self._sender.progress_at + self.link_timeout)
        return min(times) if times else None

    def data_to_send(self, now: float) -> list[bytes]:
        """GATT values to write (central) or notify (peripheral), in order."""
        out = list(self._control)
        self._control.clear()
        if self.closed is not None or not self.opened:
            return out
        acknowledgement = self._receiver.acknowledgement()
        if acknowledgement is not None:
            out.append(acknowledgement)
        self._sender.write(out, now, self.send_value)
        return out

    # ------------------------------------------------------------- the link

    def _open(self) -> bytes:
        window = self._receiver.announce()
        return Open(self._version, self.max_value, window, self.mode).encode()

    @property
    def _waiting(self) -> bool:
        """We wait for the peer: an answer to OPEN, an acknowledgement, credit."""
        opening = self._started and not self.opened and self.role is Role.CENTRAL
        return opening or self._sender.waiting

    def _on_segment(self, segment: object, now: float) -> None:
        self._sender.progress_at = now
        if isinstance(segment, Close):
            self._on_close(segment)
        elif isinstance(segment, Open):
            self._on_open(segment, now)
        elif not self.opened:
            if self.role is Role.PERIPHERAL:
                raise RemoteProtocolError(f"{type(segment).__name__.upper()} before OPEN")
            # the central missed the peripheral's OPEN: it sends OPEN again
        elif isinstance(segment, Data | Fin):
            self._receiver.take(segment, now)
        elif isinstance(segment, Ack | Nak):
            self._sender.acknowledged(segment.next, segment.window, now)
            if isinstance(segment, Nak):
                self._sender.nak(segment.next, now)
        elif isinstance(segment, Probe):
            self._receiver.probed()

    def _on_open(self, segment: Open, now: float) -> None:
        if segment.max_value >= MIN_VALUE and not self.opened:
            self.send_value = min(segment.max_value, self.max_value)  # a refusal's room too
        if not LINK_VERSION <= segment.version <= self.max_version:
            speaks = "version 1" if self.max_version == 1 else f"versions 1 to {self.max_version}"
            self._fail(
                CloseCode.VERSION,
                f"the peer speaks link protocol version {segment.version}; "
                f"this node speaks {speaks}",
            )
            return
        if segment.max_value < MIN_VALUE:
            raise RemoteProtocolError(f"OPEN announces values of {segment.max_value} bytes")
        if self.role is Role.PERIPHERAL:
            if not self.opened:
                if segment.mode not in self.modes:
                    self._fail(
                        CloseCode.MODE, f"this node serves no {_mode_name(segment.mode)} links"
                    )
                    return
                self.mode, self._version = Mode(segment.mode), segment.version
            self._control.append(self._open())  # answer every OPEN: an answer may be lost
        elif segment.mode != self.mode:
            raise RemoteProtocolError(
                f"OPEN answered in {_mode_name(segment.mode)} mode, not {self.mode.name.lower()}"
            )
        if not self.opened:
            self.opened = True
            self.send_value = min(segment.max_value, self.max_value)
            self._sender.opened(segment.window)
            self._events.append(LinkOpened(self.send_value))

    def _on_close(self, segment: Close) -> None:
        reason = segment.reason or "no reason given"
        if segment.code == CloseCode.NORMAL:
            self._finish(LinkClosed(f"the peer closed the link ({reason})", self._receiver.fin))
        else:
            codes = {code.value: code.name for code in CloseCode}
            name = codes.get(segment.code, f"code {segment.code}")
            if segment.code == CloseCode.VERSION and not self.opened and self._version > 1:
                reason = f"it speaks no link protocol version {self._version}, which a "
                reason += f"{self.mode.name.lower()} link needs ({segment.reason})"
            self._finish(LinkClosed(f"the peer ended the link ({name}: {reason})"))

    def _fail(self, code: CloseCode, reason: str) -> None:
        if self.closed is None:
            self._control.append(Close(code, reason).encode(self.send_value))
            self._finish(LinkClosed(reason))

    def _finish(self, event: LinkClosed) -> None:
        self.closed = event
        self._events.append(event)
        self._sender.timer_at = self._receiver.ack_at = None


def _mode_name(mode: int) -> str:
    return Mode(mode).name.lower() if mode in Mode.__members__.values() else f"mode-{mode}"
