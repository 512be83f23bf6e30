"""What a session has to send, written to the channel by a task of its own.

A session must never stop reading because the peer is slow to read: when
both sides stream entries at once over small buffers (a radio), two sessions
that each wait to finish a write before reading again would wait forever.
So a session only queues bytes here; :meth:`SendQueue.run` writes them,
coalesced into channel messages of up to ``chunk`` bytes, and reports each
write (``on_written``), so the session's driver knows how much still waits:
it produces more only while that stays under its bound.

A channel message is authenticated, so delivered, as a whole: a link cut in
the middle of one loses all of it. ``chunk`` follows the link's frames
(:func:`chunk_for`): 60 kB on TCP, a few values (4 kB) on BLE, so a contact
cut short still leaves every message but the last delivered, with the
entries in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..errors import ChannelError

__all__ = ["SEND_CHUNK", "SendQueue", "chunk_for"]

SEND_CHUNK = 60 * 1024  # bytes per channel message, at most
MIN_CHUNK = 1024
FRAMES_PER_CHUNK = 8


def chunk_for(max_frame_hint: int) -> int:
    """Bytes per channel message on a link whose frames carry ``max_frame_hint``:
    eight frames, within 1 kB (the channel's 19 bytes a message stay under 2 %)
    and :data:`SEND_CHUNK`."""
    return max(MIN_CHUNK, min(SEND_CHUNK, FRAMES_PER_CHUNK * max_frame_hint))


class SendQueue:
    """A queue of bytes and the task that drains it into ``send``, in channel
    messages of at most ``chunk`` bytes."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        on_written: Callable[[int], None] | None = None,
        chunk: int = SEND_CHUNK,
    ) -> None:
        self._send = send
        self._on_written = on_written
        self.chunk = chunk
        self._parts: deque[bytes | None] = deque()  # None: stop there
        self._ready = asyncio.Event()
        self.pending = 0
        """Bytes queued and not yet taken by the channel."""
        self.last_write = time.monotonic()
        """When the channel last took bytes (or bytes started waiting)."""
        self.task: asyncio.Task[None] | None = None

    def start(self, name: str) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=name)
        return self.task

    def put(self, data: bytes) -> None:
        if self.pending == 0:  # the clock of a stalled peer starts now
            self.last_write = time.monotonic()
        self.pending += len(data)
        for start in range(0, len(data), self.chunk):  # no channel message above a chunk
            self._parts.append(data[start : start + self.chunk])
        self._ready.set()

    async def run(self) -> None:
        """Write until :meth:`finish` is called and everything before it is written."""
        parts = self._parts
        while True:
            while not parts:
                self._ready.clear()
                await self._ready.wait()
            first = parts.popleft()
            if first is None:
                return
            batch, size = [first], len(first)
            while parts and (item := parts[0]) is not None and size + len(item) <= self.chunk:
                parts.popleft()
                batch.append(item)
                size += len(item)
            await self._send(b"".join(batch))
            self.pending -= size
            self.last_write = time.monotonic()
            if self._on_written is not None:
                self._on_written(size)

    async def finish(self, timeout: float) -> None:
        """Write what is queued (a last ERROR or BYE), waiting at most ``timeout``
        seconds, then stop the task."""
        task = self.task
        if task is None:
            return
        if not task.done():
            self._parts.append(None)
            self._ready.set()
            with contextlib.suppress(TimeoutError, ChannelError, OSError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
