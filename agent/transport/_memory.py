"""In-memory streams: two connected :class:`MemoryStream` ends over two pipes.

Each direction is a :class:`_Pipe` — a bounded receive buffer, plus, when the
pipe is *shaped* (see :mod:`agent.transport._limited`), frames in flight that
arrive at a scheduled time. The same code serves the plain in-memory pair
(no shaping: a write lands in the peer's buffer at once) and the slow-radio
pair, so both pass the same conformance suite.

Flow control is by credit: a writer may only put bytes in flight while the
bytes in flight plus the bytes the reader has not yet read fit in the
buffer; reading gives the credit back. (The credit travels back instantly,
which is faster than a real radio, but with a buffer much larger than
``rate × round trip`` it never limits the rate.)
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..errors import TransportError
from ._base import StreamBase

__all__ = ["MemoryStream", "memory_stream_pair"]


class _Signal:
    """Wake every waiter on any change; waiters re-check their condition."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        timer = None
        if timeout is not None:
            timer = loop.call_later(max(timeout, 0.0), _resolve, future)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            if future in self._waiters:
                self._waiters.remove(future)

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            _resolve(future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Air:
    """When a radio channel is next free (shared by both pipes when half duplex)."""

    __slots__ = ("free_at",)

    def __init__(self) -> None:
        self.free_at = 0.0


class _Pipe:
    """One direction of a pair: the writer's end and the reader's end.

    ``mtu``/``rate``/``latency`` of ``None``/``None``/``0`` mean unshaped."""

    def __init__(
        self,
        *,
        capacity: int,
        mtu: int | None = None,
        rate: float | None = None,
        latency: float = 0.0,
        air: _Air | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"buffer must be at least 1 byte, not {capacity}")
        self.capacity = capacity
        self.mtu = mtu
        self.rate = rate
        self.latency = latency
        self.air = air or _Air()
        self.buffer = bytearray()  # arrived, not yet read
        self.in_flight: deque[tuple[float, bytes | None]] = deque()  # None = the EOF
        self.in_flight_bytes = 0
        self.eof_sent = False  # the writer half-closed (or closed)
        self.eof_arrived = False
        self.writer_closed = False
        self.reader_closed = False
        self.broken = False
        self.changed = _Signal()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def shaped(self) -> bool:
        return self.mtu is not None or self.rate is not None or self.latency > 0

    def _check_writable(self) -> None:
        if self.broken:
            raise TransportError("the link broke")
        if self.writer_closed:
            raise TransportError("send on a closed stream")
        if self.eof_sent:
            raise TransportError("send after send_eof")
        if self.reader_closed:
            raise TransportError("the peer closed the stream")

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while True:
            self._check_writable()
            if not view:
                return
            free = self.capacity - len(self.buffer) - self.in_flight_bytes
            if not self.shaped:
                if free <= 0:
                    await self.changed.wait()
                    continue
                n = min(len(view), free)
                self.buffer += view[:n]
                view = view[n:]
                self.changed.notify()
                continue
            n = min(len(view), self.mtu or len(view), self.capacity)
            if free < n:  # a frame travels whole: wait for room for all of it
                await self.changed.wait()
                continue
            if self.rate is not None:  # keep about two frames queued for the air
                backlog = self.air.free_at - loop.time()
                window = 2 * (self.mtu or n) / self.rate
                if backlog > window:
                    await self.changed.wait(timeout=backlog - window)
                    continue
            self._transmit(bytes(view[:n]), loop)
            view = view[n:]

    def _transmit(self, frame: bytes | None, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        end = now
        if self.rate is not None:
            end = max(now, self.air.free_at) + (len(frame) if frame else 0) / self.rate
            self.air.free_at = end
        arrival = end + self.latency
        self.in_flight.append((arrival, frame))
        self.in_flight_bytes += len(frame) if frame else 0
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self.in_flight:
            self._timer = loop.call_at(self.in_flight[0][0], self._deliver_due, loop)

    def _deliver_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self.in_flight and self.in_flight[0][0] <= now:
            _, frame = self.in_flight.popleft()
            if frame is None:
                self.eof_arrived = True
            else:
                self.in_flight_bytes -= len(frame)
                self.buffer += frame
        self.changed.notify()
        self._arm(loop)

    def send_eof(self) -> None:
        if self.eof_sent or self.broken:
            return
        self.eof_sent = True
        self._send_end()
        self.changed.notify()

    def _send_end(self) -> None:
        """The end of the data follows what is already sent (after it, on a shaped pipe)."""
        if self.shaped:
            self._transmit(None, asyncio.get_running_loop())
        else:
            self.eof_arrived = True

    async def read(self, max_bytes: int) -> bytes:
        while True:
            if self.broken:
                raise TransportError("the link broke")
            if self.reader_closed:
                raise TransportError("receive on a closed stream")
            if self.buffer:
                data = bytes(self.buffer[:max_bytes])
                del self.buffer[:max_bytes]
                self.changed.notify()  # credit for the writer
                return data
            if self.eof_arrived:
                return b""
            await self.changed.wait()

    def _drop(self) -> None:
        self.buffer.clear()
        self.in_flight.clear()
        self.in_flight_bytes = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.changed.notify()

    def close_writer(self) -> None:
        """The writer's stream closed: an EOF follows what is already sent."""
        if not self.eof_sent and not self.reader_closed and not self.broken:
            self._send_end()
        self.eof_sent = self.writer_closed = True
        self.changed.notify()

    def close_reader(self) -> None:
        """The reader's stream closed: the writer's next send fails."""
        self.reader_closed = True
        self._drop()

    def break_(self) -> None:
        self.broken = True
        self._drop()


class MemoryStream(StreamBase):
    """One end of an in-memory pair (see :func:`memory_stream_pair`).

    Besides the :class:`~agent.plugin_api.Stream` methods it has
    :meth:`abort`, which breaks the link as a radio going out of range
    would: both ends' pending and later sends and receives raise
    :class:`~agent.errors.TransportError`."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe, *, peer: str, max_frame_hint: int) -> None:
        super().__init__(peer=peer, max_frame_hint=max_frame_hint)
        self._out = outgoing
        self._in = incoming

    async def send(self, data: bytes) -> None:
        self._check_send()
        await self._out.write(data)

    async def send_eof(self) -> None:
        if not self._closed:
            self._out.send_eof()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self._check_receive(max_bytes)
        return await self._in.read(max_bytes)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.close_writer()
        self._in.close_reader()

    def abort(self) -> None:
        """Break the link in both directions, for both ends, at once."""
        self._closed = True
        self._out.break_()
        self._in.break_()

    def __repr__(self) -> str:
        return f"<MemoryStream to {self._peer}{' closed' if self._closed else ''}>"


def memory_stream_pair(
    *,
    max_frame_hint: int = 65536,
    buffer: int = 65536,
    names: tuple[str, str] = ("memory://a", "memory://b"),
) -> tuple[MemoryStream, MemoryStream]:
    """Two connected in-memory streams, for tests and for in-process peers.

    Each direction holds at most ``buffer`` unread bytes: a ``send`` to a
    peer that does not read waits once that much is waiting (back-pressure).
    ``send_eof`` half-closes; ``close`` lets the peer read what was sent and
    then ``b""``, and makes the peer's next ``send`` raise
    :class:`~agent.errors.TransportError`; :meth:`MemoryStream.abort` breaks
    the link. ``names`` are the two ends' addresses: ``a.peer == names[1]``.

    >>> a, b = memory_stream_pair()
    >>> async def demo():
    ...     await a.send(b"hello")
    ...     await a.send_eof()
    ...     return await b.receive(), await b.receive()
    >>> asyncio.run(demo())
    (b'hello', b'')
    """
    if max_frame_hint < 1:
        raise ValueError(f"max_frame_hint must be at least 1, not {max_frame_hint}")
    a_to_b, b_to_a = _Pipe(capacity=buffer), _Pipe(capacity=buffer)
    a = MemoryStream(a_to_b, b_to_a, peer=names[1], max_frame_hint=max_frame_hint)
    b = MemoryStream(b_to_a, a_to_b, peer=names[0], max_frame_hint=max_frame_hint)
    return a, b
