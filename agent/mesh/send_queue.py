"""What a session has to send, written to the channel by a task of its own.

A session must never stop reading because the peer is slow to read: when
both sides stream entries at once over small buffers (a radio), two sessions
that each wait to finish a write before reading again would wait forever.
So a session only queues bytes here; :meth:`SendQueue.run` writes them,
coalesced into channel messages of up to :data:`SEND_CHUNK` bytes, and
reports each write (``on_written``), so the session's driver knows how much
still waits: it produces more only while that stays under its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from ..errors import ChannelError

__all__ = ["SEND_CHUNK", "SendQueue"]

SEND_CHUNK = 60 * 1024  # bytes per channel message


class SendQueue:
    """A queue of bytes and the task that drains it into ``send``."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self._send = send
        self._on_written = on_written
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
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
        if len(data) <= SEND_CHUNK:
            self._queue.put_nowait(data)
            return
        for start in range(0, len(data), SEND_CHUNK):  # no channel message above a chunk
            self._queue.put_nowait(data[start : start + SEND_CHUNK])

    async def run(self) -> None:
        """Write until :meth:`finish` is called and everything before it is written."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            parts, size = [first], len(first)
            while size < SEND_CHUNK and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    self._queue.put_nowait(None)
                    break
                parts.append(item)
                size += len(item)
            await self._send(b"".join(parts))
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
            self._queue.put_nowait(None)
            with contextlib.suppress(TimeoutError, ChannelError, OSError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
