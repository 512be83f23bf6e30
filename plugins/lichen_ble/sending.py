"""The sending half of a link: a byte stream cut into DATA segments within the
peer's credit, sent again until acknowledged.

:class:`Sender` is :class:`~lichen_ble.link.GattLink`'s, and speaks to the
peer only through it: the link queues the user's bytes in it, hands it each
ACK and NAK, asks it for the segments to write, and runs its timer.
``docs/ble.md`` ("Segmentation and reassembly", "Loss, duplicates and
order", "Flow control") gives the rules::

    sender = Sender(send_buffer=16384, timer=RetransmitTimer(1.0, 0.2, 8.0))
    sender.opened(window)                  # the peer's OPEN grants the first credit
    sender.queue(b"hello")
    out: list[bytes] = []
    sender.write(out, now, value_size=20)  # [DATA 0 b"hello"]
    sender.acknowledged(1, window, now)    # the peer's ACK: 0 is delivered

Segments go out numbered; the oldest unacknowledged one and those after it
are sent again (go-back-N) after a NAK or when the retransmission timeout
(:class:`~lichen_ble.rto.RetransmitTimer`) expires. At most the peer's window
of payload bytes is in flight; with no credit left the sender probes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from agent.errors import RemoteProtocolError

from .rto import RetransmitTimer
from .segments import DATA_HEADER, SEQ_SPACE, Data, Fin, Probe, ahead

__all__ = ["Sender"]

_MAX_OUTSTANDING = SEQ_SPACE // 4  # segments in flight, well inside the half sequence space


@dataclass
class _Sent:
    seq: int
    value: bytes
    size: int  # payload bytes (0 for FIN)
    sent_at: float
    again: bool = False  # sent more than once (no RTT sample: Karn)


class Sender:
    """What a link sends (see the module). ``send_buffer`` bounds the bytes
    queued and not yet acknowledged. ``timer_at`` is when the retransmission
    timer expires (the link also runs its OPEN on it); ``progress_at`` when
    the peer was last heard, or the waiting began."""

    def __init__(self, send_buffer: int, timer: RetransmitTimer) -> None:
        self.send_buffer = send_buffer
        self.timer = timer
        self.timer_at: float | None = None  # retransmission / probe / re-OPEN
        self.progress_at = 0.0
        self.eof = False  # a FIN follows the bytes queued
        self.retransmissions = 0  # segments sent again
        self._out = bytearray()  # queued, not yet in a segment
        self._unacked: deque[_Sent] = deque()
        self._in_flight = 0  # payload bytes in _unacked
        self._next = 0  # the sequence number sent next
        self._peer_window = 0  # bytes we may send past the oldest unacknowledged
        self._fin_sent = False
        self._resend = False  # go back: send every unacknowledged segment again
        self._nak_seen: int | None = None
        self._probe = False

    # ------------------------------------------------------------------ state

    @property
    def room(self) -> int:
        """Bytes :meth:`queue` takes now without going over ``send_buffer``."""
        return max(0, self.send_buffer - len(self._out) - self._in_flight)

    @property
    def blocked(self) -> bool:
        """Something waits to be sent and the peer's window has no room for it."""
        pending = bool(self._out) or (self.eof and not self._fin_sent)
        return pending and not self._unacked and self._peer_window - self._in_flight <= 0

    @property
    def waiting(self) -> bool:
        """We wait for the peer: an acknowledgement, or credit."""
        return bool(self._unacked) or self.blocked

    @property
    def flushed(self) -> bool:
        """Everything sent (and the FIN, after ``eof``) is acknowledged."""
        return not self._out and not self._unacked and (self._fin_sent or not self.eof)

    @property
    def finished(self) -> bool:
        """``eof`` is set and nothing queued or unacknowledged is left (a link
        that closes now closes cleanly on this side)."""
        return self.eof and not self._unacked and not self._out

    # ----------------------------------------------------------------- inputs

    def queue(self, data: bytes) -> None:
        """Bytes to send, after those queued before."""
        self._out += data

    def arm(self, now: float) -> None:
        """Start the timer at the current timeout (the link's OPEN waits on it)."""
        self.timer_at = now + self.timer.rto

    def opened(self, window: int) -> None:
        """The peer's OPEN arrived: its first credit; the OPEN's timer is over."""
        self._peer_window = window
        self.timer_at = None
        self.timer.opened()

    def acknowledged(self, next_seq: int, window: int, now: float) -> None:
        """An ACK or NAK: every segment before ``next_seq`` arrived; ``window``
        bytes may follow the oldest one still unacknowledged."""
        if not self._unacked and next_seq == self._next:
            self._peer_window = window
            return
        oldest = self._unacked[0].seq if self._unacked else self._next
        acked = ahead(next_seq, oldest)
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
            self.timer.progress(sample)
            self.timer_at = now + self.timer.rto if self._unacked else None

    def nak(self, next_seq: int, now: float) -> None:
        """A NAK (after :meth:`acknowledged`): the peer lacks ``next_seq``; go back
        to it, once per gap."""
        if next_seq not in (self._next, self._nak_seen):  # a gap, not NAKed before
            self._nak_seen = next_seq
            self._go_back()
            self.timer_at = now + self.timer.rto

    def handle_timer(self, now: float, opening: bool) -> bool:
        """The timer expired (if it did): back off, then send again what is
        unacknowledged, or probe for credit. True if the link, ``opening``,
        must send its OPEN again instead."""
        if self.timer_at is None or now < self.timer_at:
            return False
        self.timer_at = now + self.timer.back_off()
        if opening:
            return True
        if self._unacked:
            self._go_back()
        elif self.blocked:
            self._probe = True
        else:
            self.timer_at = None
        return False

    # ----------------------------------------------------------------- output

    def write(self, out: list[bytes], now: float, value_size: int) -> None:
        """Append the segments due to ``out``: those sent again, new DATA (at
        most ``value_size`` bytes each) and the FIN, a PROBE."""
        if self._resend:
            self._resend = False
            for sent in self._unacked:
                sent.again, sent.sent_at = True, now
                out.append(sent.value)
        self._fill(out, now, value_size)
        if self._probe:
            self._probe = False
            out.append(Probe().encode())

    def _fill(self, out: list[bytes], now: float, value_size: int) -> None:
        payload_max = value_size - DATA_HEADER
        limit = min(self._peer_window, self.send_buffer)
        while self._out and len(self._unacked) < _MAX_OUTSTANDING:
            room = limit - self._in_flight
            if room <= 0:
                break
            size = min(len(self._out), payload_max, room)
            payload = bytes(self._out[:size])
            del self._out[:size]
            self._emit(Data(self._next, payload).encode(), size, now, out)
        if self.eof and not self._out and not self._fin_sent:
            self._fin_sent = True
            self._emit(Fin(self._next).encode(), 0, now, out)
        if self.blocked and self.timer_at is None:  # now waiting for credit
            self.timer_at = now + self.timer.rto
            self.progress_at = now

    def _emit(self, value: bytes, size: int, now: float, out: list[bytes]) -> None:
        if not self._unacked:  # now waiting for an acknowledgement
            self.timer_at = now + self.timer.rto
            self.progress_at = max(self.progress_at, now)
        self._unacked.append(_Sent(self._next, value, size, now))
        self._in_flight += size
        self._next = (self._next + 1) % SEQ_SPACE
        out.append(value)

    def _go_back(self) -> None:
        if self._unacked:
            self._resend = True
            self.retransmissions += len(self._unacked)
