"""A stream that counts the bytes crossing it: wire bytes for budgets and benchmarks."""

from __future__ import annotations

from ..link_api import Stream

__all__ = ["CountingStream"]


class CountingStream:
    """Wraps any :class:`~agent.link_api.Stream`; ``sent`` and ``received`` count
    every byte that crossed it, whatever the layers above did with them::

        stream = CountingStream(await transport.connect(address))
        ...
        print(stream.sent + stream.received, "bytes on the wire")
    """

    def __init__(self, inner: Stream) -> None:
        self.inner = inner
        self.sent = 0
        self.received = 0

    @property
    def max_frame_hint(self) -> int:
        return self.inner.max_frame_hint

    @property
    def peer(self) -> str:
        return self.inner.peer

    async def send(self, data: bytes) -> None:
        await self.inner.send(data)
        self.sent += len(data)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        self.received += len(data)
        return data

    async def close(self) -> None:
        await self.inner.close()
