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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
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
from .rto import RetransmitTimer
from .segments import (
    DATA_HEADER,
    MIN_VALUE,
    SEQ_SPACE,
    Ack,
    Close,
    CloseCode,
    Data,
    Fin,
    Nak,
    Open,
    Probe,
    decode,
)
from .service import LINK_VERSION

__all__ = [
    "MAX_VALUE",
    "NEED_DATA",
    "DataReceived",
    "EndOfStream",
    "GattLink",
    "LinkClosed",
    "LinkEvent",
    "LinkOpened",
    "NeedData",
    "Role",
    "value_size",
]

_MAX_OUTSTANDING = SEQ_SPACE // 4  # segments in flight, well inside the half sequence space


def _ahead(a: int, b: int) -> int:
    """How far ``a`` is after ``b`` in the sequence space (negative: before)."""
    d = (a - b) % SEQ_SPACE
    return d - SEQ_SPACE if d >= SEQ_SPACE // 2 else d


@dataclass
class _Sent:
    seq: int
    value: bytes
    size: int  # payload bytes (0 for FIN)
    sent_at: float
    again: bool = False  # sent more than once (no RTT sample: Karn)


class GattLink:
    """One end of a BLE link (see the module). ``mtu`` is the ATT MTU known so far
    (:meth:`mtu_changed` when the exchange ends, before :meth:`start`);
    ``buffer`` bounds the bytes received and not yet read (the credit granted),
    ``send_buffer`` the bytes accepted by :meth:`send` and not yet acknowledged."""

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
    ) -> None:
        self.role = role
        self.buffer, self.send_buffer = buffer, send_buffer
        self.ack_delay = ack_delay
        self.link_timeout = link_timeout
        self.max_value = value_size(mtu)  # what we accept (announced in OPEN)
        self.send_value = MIN_VALUE  # what we send, once open
        self.opened = False
        self.closed: LinkClosed | None = None
        self.retransmissions = 0
        self._started = False
        self._events: deque[LinkEvent] = deque()
        self._control: deque[bytes] = deque()  # OPEN, CLOSE: sent before anything else
        # sending
        self._out = bytearray()  # accepted, not yet in a segment
        self._unacked: deque[_Sent] = deque()
        self._in_flight = 0  # payload bytes in _unacked
        self._snd_nxt = 0
        self._peer_window = 0  # bytes we may send past the oldest unacknowledged
        self._eof = False  # send_eof called
        self._fin_sent = False
        self._resend = False  # go back: send every unacknowledged segment again
        self._nak_seen: int | None = None
        self._timer = RetransmitTimer(rto_initial, rto_min, rto_max)
        self._timer_at: float | None = None  # retransmission / probe / re-OPEN
        self._progress_at = 0.0
        self._probe = False
        # receiving
        self._in = bytearray()
        self._rcv_nxt = 0
        self._rcv_total = 0  # in-order payload bytes received
        self._edge = 0  # _rcv_total + the window last announced
        self._fin_received = False
        self._eof_given = False
        self._ack_due = False
        self._nak_due = False
        self._nak_for: int | None = None
        self._ack_at: float | None = None  # delayed ACK

    # ------------------------------------------------------------ adapter inputs

    def mtu_changed(self, att_mtu: int) -> None:
        """The ATT MTU exchange ended; before OPEN this sets the value size."""
        if not self.opened:
            self.max_value = value_size(att_mtu)

    def start(self, now: float) -> None:
        """The central opens the link (call once subscribed to tx); the peripheral
        waits for the central's OPEN."""
        self._started = True
        self._progress_at = now
        if self.role is Role.CENTRAL:
            self._control.append(self._open())
            self._timer_at = now + self._timer.rto

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
            clean = self._fin_received and self._eof and not self._unacked and not self._out
            self._finish(LinkClosed(f"the BLE connection ended: {reason}", clean=clean))

    def handle_timer(self, now: float) -> None:
        """Time passed: retransmit, probe, acknowledge or give up as due."""
        if self.closed is not None:
            return
        if self._waiting and now >= self._progress_at + self.link_timeout:
            self._fail(
                CloseCode.TIMEOUT,
                f"the peer acknowledged nothing for {self.link_timeout:g} s",
            )
            return
        if self._ack_at is not None and now >= self._ack_at:
            self._ack_due = True
        if self._timer_at is not None and now >= self._timer_at:
            self._timer_at = now + self._timer.back_off()
            if not self.opened and self.role is Role.CENTRAL:
                self._control.append(self._open())
            elif self._unacked:
                self._go_back()
            elif self._blocked:
                self._probe = True
            else:
                self._timer_at = None

    # --------------------------------------------------------------- user inputs

    @property
    def send_room(self) -> int:
        """Bytes :meth:`send` takes now without going over ``send_buffer``."""
        return max(0, self.send_buffer - len(self._out) - self._in_flight)

    def send(self, data: bytes) -> None:
        """Queue bytes (the shell waits for :attr:`send_room` first)."""
        if self.closed is not None:
            raise TransportError(f"the link is closed: {self.closed.reason}")
        if self._eof:
            raise TransportError("send after send_eof")
        self._out += data

    def send_eof(self) -> None:
        """Half-close: a FIN follows the bytes queued (idempotent)."""
        if self.closed is None:
            self._eof = True

    def close(self, reason: str = "closed", code: CloseCode = CloseCode.NORMAL) -> None:
        """End the link now: CLOSE to the peer, then nothing more either way."""
        if self.closed is None:
            self._control.append(Close(code, reason).encode(self.send_value))
            clean = self._fin_received and self._eof and not self._unacked and not self._out
            self._finish(LinkClosed(reason, clean=clean))

    # ------------------------------------------------------------------ outputs

    @property
    def stalled(self) -> bool:
        """Bytes wait to be sent and the peer grants no credit for them."""
        return self._blocked

    @property
    def flushed(self) -> bool:
        """Everything sent (and the FIN, after :meth:`send_eof`) is acknowledged."""
        return not self._out and not self._unacked and (self._fin_sent or not self._eof)

    def next_event(self, max_bytes: int = 65536) -> LinkEvent | Literal[NeedData.NEED_DATA]:
        """The next event: data (at most ``max_bytes``; reading it grants credit),
        then :class:`EndOfStream` once, then :class:`LinkClosed`; or :data:`NEED_DATA`."""
        if self._events and isinstance(self._events[0], LinkOpened):
            return self._events.popleft()
        if self._in:
            data = bytes(self._in[:max_bytes])
            del self._in[:max_bytes]
            self._window_opened()
            return DataReceived(data)
        if self._fin_received and not self._eof_given:
            self._eof_given = True
            return EndOfStream()
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` is due (None: nothing is timed)."""
        if self.closed is not None:
            return None
        times = [t for t in (self._timer_at, self._ack_at) if t is not None]
        if self._waiting:
            times.append(self._progress_at + self.link_timeout)
        return min(times) if times else None

    def data_to_send(self, now: float) -> list[bytes]:
        """GATT values to write (central) or notify (peripheral), in order."""
        out = list(self._control)
        self._control.clear()
        if self.closed is not None or not self.opened:
            return out
        if self._nak_due or self._ack_due:
            window = self._announce()
            segment = Nak if self._nak_due else Ack
            out.append(segment(self._rcv_nxt, window).encode())
            self._ack_due = self._nak_due = False
            self._ack_at = None
        if self._resend:
            self._resend = False
            for sent in self._unacked:
                sent.again, sent.sent_at = True, now
                out.append(sent.value)
        self._fill(out, now)
        if self._probe:
            self._probe = False
            out.append(Probe().encode())
        return out

    # ------------------------------------------------------------------ sending

    def _open(self) -> bytes:
        return Open(LINK_VERSION, self.max_value, self._announce()).encode()

    def _announce(self) -> int:
        window = self.buffer - len(self._in)
        self._edge = self._rcv_total + window
        return window

    @property
    def _blocked(self) -> bool:
        """Something waits to be sent and the peer's window has no room for it."""
        pending = bool(self._out) or (self._eof and not self._fin_sent)
        return pending and not self._unacked and self._peer_window - self._in_flight <= 0

    @property
    def _waiting(self) -> bool:
        """We wait for the peer: an answer to OPEN, an acknowledgement, credit."""
        opening = self._started and not self.opened and self.role is Role.CENTRAL
        return opening or bool(self._unacked) or self._blocked

    def _fill(self, out: list[bytes], now: float) -> None:
        payload_max = self.send_value - DATA_HEADER
        limit = min(self._peer_window, self.send_buffer)
        while self._out and len(self._unacked) < _MAX_OUTSTANDING:
            room = limit - self._in_flight
            if room <= 0:
                break
            size = min(len(self._out), payload_max, room)
            payload = bytes(self._out[:size])
            del self._out[:size]
            self._emit(Data(self._snd_nxt, payload).encode(), size, now, out)
        if self._eof and not self._out and not self._fin_sent:
            self._fin_sent = True
            self._emit(Fin(self._snd_nxt).encode(), 0, now, out)
        if self._blocked and self._timer_at is None:  # now waiting for credit
            self._timer_at = now + self._timer.rto
            self._progress_at = now

    def _emit(self, value: bytes, size: int, now: float, out: list[bytes]) -> None:
        if not self._unacked:  # now waiting for an acknowledgement
            self._timer_at = now + self._timer.rto
            self._progress_at = max(self._progress_at, now)
        self._unacked.append(_Sent(self._snd_nxt, value, size, now))
        self._in_flight += size
        self._snd_nxt = (self._snd_nxt + 1) % SEQ_SPACE
        out.append(value)

    def _go_back(self) -> None:
        if self._unacked:
            self._resend = True
            self.retransmissions += len(self._unacked)

    def _acknowledged(self, next_seq: int, window: int, now: float) -> None:
        if not self._unacked and next_seq == self._snd_nxt:
            self._peer_window = window
            return
        oldest = self._unacked[0].seq if self._unacked else self._snd_nxt
        acked = _ahead(next_seq, oldest)
        if acked < 0:
            return  # an old acknowledgement (a duplicate): nothing new
        if acked > len(self._unacked):
            raise RemoteProtocolError(f"ACK {next_seq} acknowledges segments never sent")
        sample = None
        for _ in range(acked):
            sent = self._unacked.popleft()
            self._in_flight -= sent.size
            sample = None if sent.again else now - sent.sent_at
        self._peer_window = window
        if acked:
            self._nak_seen = None
            self._timer.progress(sample)
            self._timer_at = now + self._timer.rto if self._unacked else None

    # ---------------------------------------------------------------- receiving

    def _on_segment(self, segment: object, now: float) -> None:
        self._progress_at = now
        if isinstance(segment, Close):
            self._on_close(segment)
        elif isinstance(segment, Open):
            self._on_open(segment, now)
        elif not self.opened:
            if self.role is Role.PERIPHERAL:
                raise RemoteProtocolError(f"{type(segment).__name__.upper()} before OPEN")
            # the central missed the peripheral's OPEN: it sends OPEN again
        elif isinstance(segment, Data | Fin):
            self._on_data(segment, now)
        elif isinstance(segment, Ack | Nak):
            self._acknowledged(segment.next, segment.window, now)
            nak = isinstance(segment, Nak) and segment.next != self._snd_nxt
            if nak and self._nak_seen != segment.next:  # once per gap
                self._nak_seen = segment.next
                self._go_back()
                self._timer_at = now + self._timer.rto
        elif isinstance(segment, Probe):
            self._ack_due = True

    def _on_open(self, segment: Open, now: float) -> None:
        if segment.version != LINK_VERSION:
            self._fail(
                CloseCode.VERSION,
                f"the peer speaks link protocol version {segment.version}; "
                f"this node speaks version {LINK_VERSION}",
            )
            return
        if segment.max_value < MIN_VALUE:
            raise RemoteProtocolError(f"OPEN announces values of {segment.max_value} bytes")
        if self.role is Role.PERIPHERAL:
            self._control.append(self._open())  # answer every OPEN: an answer may be lost
        if not self.opened:
            self.opened = True
            self.send_value = min(segment.max_value, self.max_value)
            self._peer_window = segment.window
            self._timer_at = None
            self._timer.opened()
            self._events.append(LinkOpened(self.send_value))

    def _on_data(self, segment: Data | Fin, now: float) -> None:
        distance = _ahead(segment.seq, self._rcv_nxt)
        if distance < 0:
            self._ack_due = True  # a duplicate: our ACK may have been lost
            return
        if distance > 0:
            if self._nak_for != self._rcv_nxt:  # one NAK per gap
                self._nak_for = self._rcv_nxt
                self._nak_due = True
            return
        if self._fin_received:
            raise RemoteProtocolError("a segment after FIN")
        self._rcv_nxt = (self._rcv_nxt + 1) % SEQ_SPACE
        self._nak_for = None
        if isinstance(segment, Fin):
            self._fin_received = True
            self._ack_due = True
            return
        size = len(segment.payload)
        if self._rcv_total + size > self._edge:
            raise RemoteProtocolError(
                f"DATA beyond the credit granted ({self._edge - self._rcv_total} bytes left)"
            )
        self._in += segment.payload
        self._rcv_total += size
        if self._edge - self._rcv_total < self.buffer // 2:
            self._ack_due = True
        elif self._ack_at is None:
            self._ack_at = now + self.ack_delay

    def _window_opened(self) -> None:
        free = self.buffer - len(self._in)
        if self._rcv_total + free - self._edge >= max(1, self.buffer // 4) and self.opened:
            self._ack_due = True

    def _on_close(self, segment: Close) -> None:
        reason = segment.reason or "no reason given"
        if segment.code == CloseCode.NORMAL:
            self._finish(LinkClosed(f"the peer closed the link ({reason})", self._fin_received))
        else:
            codes = {code.value: code.name for code in CloseCode}
            name = codes.get(segment.code, f"code {segment.code}")
            self._finish(LinkClosed(f"the peer ended the link ({name}: {reason})"))

    def _fail(self, code: CloseCode, reason: str) -> None:
        if self.closed is None:
            self._control.append(Close(code, reason).encode(self.send_value))
            self._finish(LinkClosed(reason))

    def _finish(self, event: LinkClosed) -> None:
        self.closed = event
        self._events.append(event)
        self._timer_at = self._ack_at = None
