"""The individual conformance checks run by :func:`agent.transport.check_transport`.

Each check takes a fresh connected pair ``(a, b)`` and the suite's options,
and fails with ``AssertionError``; the suite closes both ends afterwards and
bounds each check's time. No check uses a fixed sleep as an assertion: "it
blocks" means "made no progress for ``settle`` seconds", "it ends" means
"before the suite's timeout".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import TransportError
from ..link_api import Stream

__all__ = ["CHECKS", "Options"]

_CHUNK = 65536


@dataclass(frozen=True)
class Options:
    large: int
    backpressure_limit: int
    settle: float


async def _read_exactly(stream: Stream, n: int, max_bytes: int = _CHUNK) -> bytes:
    data = bytearray()
    while len(data) < n:
        got = await stream.receive(min(max_bytes, n - len(data)))
        assert got, f"end of stream after {len(data)} of {n} bytes"
        assert len(got) <= max_bytes, f"receive({max_bytes}) returned {len(got)} bytes"
        data += got
    return bytes(data)


async def _read_to_eof(stream: Stream) -> bytes:
    data = bytearray()
    while got := await stream.receive(_CHUNK):
        data += got
    return bytes(data)


async def _expect_transport_error(what: str, call: Awaitable[object]) -> None:
    try:
        await call
    except TransportError:
        return
    raise AssertionError(f"{what} did not raise TransportError")


async def _expect_end(what: str, call: Awaitable[bytes]) -> None:
    """A receive cut short by a close ends the stream (``b""``) or raises TransportError."""
    try:
        got = await call
    except TransportError:
        return
    assert got == b"", f"{what} returned {got!r}"


async def _until_stalled(
    progress: Callable[[], int], task: asyncio.Task[None], settle: float
) -> None:
    """Return once ``progress()`` has not moved for ``settle`` seconds, or ``task`` ended."""
    last = -1
    while not task.done() and progress() != last:
        last = progress()
        await asyncio.wait({task}, timeout=settle)


class _Pump:
    """Sends ``chunk`` again and again until told to stop, counting what went."""

    def __init__(self, stream: Stream, limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.sent = 0
        self.stop = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        chunk = bytes(range(256)) * 64  # 16 KiB
        while self.sent < self.limit and not self.stop:
            await self.stream.send(chunk)
            self.sent += len(chunk)


async def attributes(a: Stream, b: Stream, options: Options) -> None:
    for stream in (a, b):
        assert isinstance(stream.peer, str) and stream.peer, f"peer is {stream.peer!r}"
        hint = stream.max_frame_hint
        assert isinstance(hint, int) and hint >= 1, f"max_frame_hint is {hint!r}"
    frame = random.Random(1).randbytes(min(a.max_frame_hint, 1 << 20))
    await a.send(frame)
    assert await _read_exactly(b, len(frame)) == frame


async def ordering(a: Stream, b: Stream, options: Options) -> None:
    rng = random.Random(2)
    for sender, receiver in ((a, b), (b, a)):
        longest = max(2, min(3000, options.large // 150))  # ≈ large / 100 in all
        messages = [rng.randbytes(rng.randrange(0, longest)) for _ in range(300)]
        expected = b"".join(messages)

        async def send_all(sender: Stream = sender, messages: list[bytes] = messages) -> None:
            for message in messages:
                await sender.send(message)

        _, received = await asyncio.gather(
            send_all(), _read_exactly(receiver, len(expected), rng.choice((251, 4096, _CHUNK)))
        )
        assert received == expected, "bytes arrived changed or out of order"


async def zero_length_send(a: Stream, b: Stream, options: Options) -> None:
    await a.send(b"")
    await a.send(b"")
    await a.send(b"x")
    assert await b.receive() == b"x", "an empty send delivered something"
    await a.send(b"")
    await a.send_eof()
    assert await b.receive() == b"", "expected the end of the stream after send_eof"


async def receive_bounds(a: Stream, b: Stream, options: Options) -> None:
    await a.send(bytes(range(256)) * 4)
    first = await b.receive(1)
    assert len(first) == 1, f"receive(1) returned {len(first)} bytes"
    rest = bytearray(first)
    for limit in (2, 3, 10, 100, 1000):
        got = await b.receive(limit)
        assert 1 <= len(got) <= limit, f"receive({limit}) returned {len(got)} bytes"
        rest += got
    rest += await _read_exactly(b, 1024 - len(rest))
    assert bytes(rest) == bytes(range(256)) * 4
    for bad in (0, -1):
        try:
            await b.receive(bad)
        except ValueError:
            continue
        raise AssertionError(f"receive({bad}) did not raise ValueError")


async def large_both_ways(a: Stream, b: Stream, options: Options) -> None:
    rng = random.Random(3)
    payload_a, payload_b = rng.randbytes(options.large), rng.randbytes(options.large)
    _, _, got_b, got_a = await asyncio.gather(
        a.send(payload_a),
        b.send(payload_b),
        _read_exactly(b, len(payload_a)),
        _read_exactly(a, len(payload_b)),
    )
    for sent, got in ((payload_a, got_b), (payload_b, got_a)):
        assert hashlib.sha256(got).digest() == hashlib.sha256(sent).digest(), "large data changed"


async def concurrent_send_receive(a: Stream, b: Stream, options: Options) -> None:
    pending = asyncio.create_task(a.receive())
    await asyncio.sleep(0)
    await a.send(b"ping")  # must not wait for a's own pending receive
    assert await _read_exactly(b, 4) == b"ping"
    await b.send(b"pong")
    assert await pending == b"pong"

    async def echo() -> None:
        while data := await b.receive():
            await b.send(data)
        await b.send_eof()

    rng = random.Random(4)
    longest = max(2, min(2000, options.large // 100))
    messages = [rng.randbytes(rng.randrange(1, longest)) for _ in range(200)]
    expected = b"".join(messages)

    async def send_all() -> None:
        for message in messages:
            await a.send(message)
        await a.send_eof()

    _, echoed, _ = await asyncio.gather(send_all(), _read_to_eof(a), echo())
    assert echoed == expected, "the echo came back changed"


async def backpressure(a: Stream, b: Stream, options: Options) -> None:
    pump = _Pump(a, options.backpressure_limit)
    await _until_stalled(lambda: pump.sent, pump.task, options.settle)
    if pump.task.done():
        pump.task.result()  # a send that failed raises here
        raise AssertionError(f"sent {pump.sent} bytes to a peer that never reads: no back-pressure")
    pump.stop = True  # the pending send completes once b reads
    received = 0
    while not pump.task.done() or received < pump.sent:
        got = await b.receive(_CHUNK)
        assert got, f"end of stream after {received} of {pump.sent} bytes"
        received += len(got)
    await pump.task
    assert received == pump.sent, f"received {received} of {pump.sent} bytes"


async def half_close(a: Stream, b: Stream, options: Options) -> None:
    await a.send(b"request")
    await a.send_eof()
    await a.send_eof()  # idempotent
    assert await _read_to_eof(b) == b"request"
    assert await b.receive() == b"", "the end of the stream did not stay ended"
    await _expect_transport_error("a send after send_eof", a.send(b"late"))
    await b.send(b"reply")  # the other direction still works
    await b.send_eof()
    assert await _read_to_eof(a) == b"reply"


async def close_flushes(a: Stream, b: Stream, options: Options) -> None:
    payload = random.Random(5).randbytes(min(200_000, options.large))

    async def send_then_close() -> None:
        await a.send(payload)
        await a.close()

    _, received = await asyncio.gather(send_then_close(), _read_to_eof(b))
    assert received == payload, f"received {len(received)} of {len(payload)} bytes before b''"


async def abrupt_close(a: Stream, b: Stream, options: Options) -> None:
    pending = asyncio.create_task(b.receive())
    await asyncio.sleep(0)
    await a.close()
    await _expect_end("the peer's receive pending at close", pending)
    for _ in range(10_000):  # TCP may take one send before it learns of the reset
        try:
            await b.send(b"x" * 1024)
        except TransportError:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("sends to a closed peer never raised TransportError")


async def close_unblocks_peer_send(a: Stream, b: Stream, options: Options) -> None:
    pump = _Pump(b, options.backpressure_limit)
    await _until_stalled(lambda: pump.sent, pump.task, options.settle)
    assert not pump.task.done(), "the sender never blocked"
    await a.close()
    await _expect_transport_error("a send blocked on a peer that closed", pump.task)


async def close_unblocks_own_operations(a: Stream, b: Stream, options: Options) -> None:
    receiving = asyncio.create_task(a.receive())
    pump = _Pump(a, options.backpressure_limit)
    await _until_stalled(lambda: pump.sent, pump.task, options.settle)
    assert not pump.task.done(), "the sender never blocked"
    assert not receiving.done(), "receive returned with nothing sent"
    await a.close()
    await _expect_end("a receive pending at close", receiving)
    await _expect_transport_error("a send pending at close", pump.task)


async def close_idempotent(a: Stream, b: Stream, options: Options) -> None:
    await a.close()
    await a.close()
    await asyncio.gather(b.close(), b.close())
    for stream in (a, b):
        await _expect_transport_error("send after close", stream.send(b"x"))
        await _expect_transport_error("an empty send after close", stream.send(b""))
        await _expect_transport_error("receive after close", stream.receive())
        with contextlib.suppress(TransportError):  # a no-op, or refused: both fine
            await stream.send_eof()


Check = Callable[[Stream, Stream, Options], Awaitable[None]]

#: every check, by name, in the order :func:`check_transport` runs them
CHECKS: dict[str, Check] = {
    check.__name__: check
    for check in (
        attributes,
        ordering,
        zero_length_send,
        receive_bounds,
        large_both_ways,
        concurrent_send_receive,
        backpressure,
        half_close,
        close_flushes,
        abrupt_close,
        close_unblocks_peer_send,
        close_unblocks_own_operations,
        close_idempotent,
    )
}
