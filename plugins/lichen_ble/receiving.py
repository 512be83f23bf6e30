"""The receiving half of a link: DATA and FIN in order into a byte stream, and
the credit that stream is granted.

:class:`Receiver` is :class:`~lichen_ble.link.GattLink`'s, and speaks to the
peer only through it: the link hands it each DATA or FIN once the link is
open, asks it for the acknowledgement due (an ACK, or a NAK at the first gap)
when it writes, and reads the bytes and the end of the stream out of it.
``docs/ble.md`` ("Segmentation and reassembly", "Loss, duplicates and
order", "Flow control") gives the rules::

    receiver = Receiver(buffer=16384, ack_delay=0.02)
    window = receiver.announce()           # the credit, in OPEN
    receiver.take(Data(0, b"hi"), now)     # in order: kept, an ACK later
    receiver.acknowledgement()             # b"\\x04..." when one is due, else None
    receiver.next_event(65536)             # DataReceived(b"hi"), then EndOfStream

The credit is counted in bytes: every ACK and NAK carries how many more bytes
the receiver takes past the last one it holds in order (``buffer`` minus what
is received and not yet read). A DATA beyond that edge breaks the protocol.
"""

from __future__ import annotations

from agent.errors import RemoteProtocolError

from .events import DataReceived, EndOfStream
from .segments import SEQ_SPACE, Ack, Data, Fin, Nak, ahead

__all__ = ["Receiver"]


class Receiver:
    """What a link has received (see the module). ``buffer`` bounds the bytes
    received and not yet read; an ACK waits up to ``ack_delay`` seconds for
    more DATA to acknowledge with it."""

    def __init__(self, buffer: int, ack_delay: float) -> None:
        self.buffer = buffer
        self.ack_delay = ack_delay
        self.fin = False  # the peer's FIN was taken (in order)
        self.ack_at: float | None = None  # a delayed ACK is due then
        self._in = bytearray()  # received in order, not yet read
        self._next = 0  # the sequence number taken next
        self._total = 0  # in-order payload bytes received
        self._edge = 0  # _total + the window last announced
        self._eof_given = False
        self._ack_due = False
        self._nak_due = False
        self._nak_for: int | None = None  # the gap a NAK was sent for

    def announce(self) -> int:
        """The window to send now (in OPEN, ACK or NAK): from here on the peer
        may send that many bytes past those received."""
        window = self.buffer - len(self._in)
        self._edge = self._total + window
        return window

    def take(self, segment: Data | Fin, now: float) -> None:
        """A DATA or FIN from the peer: taken if it is the next one; a duplicate
        is acknowledged again, a gap answered by one NAK."""
        distance = ahead(segment.seq, self._next)
        if distance < 0:
            self._ack_due = True  # a duplicate: our ACK may have been lost
            return
        if distance > 0:
            if self._nak_for != self._next:  # one NAK per gap
                self._nak_for = self._next
                self._nak_due = True
            return
        if self.fin:
            raise RemoteProtocolError("a segment after FIN")
        self._next = (self._next + 1) % SEQ_SPACE
        self._nak_for = None
        if isinstance(segment, Fin):
            self.fin = True
            self._ack_due = True
            return
        size = len(segment.payload)
        if self._total + size > self._edge:
            raise RemoteProtocolError(
                f"DATA beyond the credit granted ({self._edge - self._total} bytes left)"
            )
        self._in += segment.payload
        self._total += size
        if self._edge - self._total < self.buffer // 2:
            self._ack_due = True
        elif self.ack_at is None:
            self.ack_at = now + self.ack_delay

    def probed(self) -> None:
        """The peer sent PROBE: it waits for credit, so an ACK tells it the window."""
        self._ack_due = True

    def handle_timer(self, now: float) -> None:
        """A delayed ACK becomes due at ``ack_at``."""
        if self.ack_at is not None and now >= self.ack_at:
            self._ack_due = True

    def acknowledgement(self) -> bytes | None:
        """The ACK (or the NAK, at a gap) due now, with the window; None if none is."""
        if not (self._nak_due or self._ack_due):
            return None
        window = self.announce()
        segment = Nak if self._nak_due else Ack
        self._ack_due = self._nak_due = False
        self.ack_at = None
        return segment(self._next, window).encode()

    def next_event(self, max_bytes: int) -> DataReceived | EndOfStream | None:
        """Bytes received (at most ``max_bytes``; reading them grants credit), then
        :class:`EndOfStream` once after the FIN; None when there is neither."""
        if self._in:
            data = bytes(self._in[:max_bytes])
            del self._in[:max_bytes]
            self._window_opened()
            return DataReceived(data)
        if self.fin and not self._eof_given:
            self._eof_given = True
            return EndOfStream()
        return None

    def _window_opened(self) -> None:
        """Reading freed room: a quarter of the buffer more is worth an ACK."""
        free = self.buffer - len(self._in)
        if self._total + free - self._edge >= max(1, self.buffer // 4):
            self._ack_due = True
