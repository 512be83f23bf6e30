"""HTTP/1.1 over any agent :class:`~agent.link_api.Stream`, not only a socket.

A BLE link in mule mode (docs/ble.md) carries plain HTTP requests and
responses on its byte stream. This module makes such a stream what
:class:`~agent.http.HttpServer` serves and what a client speaks on:

* :func:`stream_connection` wraps a stream in a genuine asyncio
  ``StreamReader``/``StreamWriter`` pair, through :class:`StreamTransport`
  (an ``asyncio.Transport`` whose reads and writes are the stream's, with the
  same back-pressure: reading pauses while the reader's buffer is full, so
  the link's credit stays closed; ``drain`` waits while more than 64 KiB wait
  to be sent; ``write_eof`` is the stream's half-close);
* :func:`serve_stream` serves one such connection with every guard of the
  server (timeouts, body limit, connections per client, keyed by ``client``);
* :class:`StreamHttpClient` sends requests on a stream and reads the answers
  (keep-alive, one at a time), for a central and for tests::

    client = StreamHttpClient(stream)
    answer = await client.request("GET", "/mule/v1/info")
    answer.status, answer.headers["content-type"], answer.body
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import TransportError
from .link_api import Stream

if TYPE_CHECKING:
    from .http import HttpServer

__all__ = ["HttpAnswer", "StreamHttpClient", "StreamTransport", "serve_stream", "stream_connection"]

HIGH_WATER = 64 * 1024  # bytes waiting to be sent before writers are paused
_CHUNK = 16 * 1024  # bytes handed to the stream per send


class StreamTransport(asyncio.Transport):
    """An asyncio transport over ``stream`` for ``protocol`` (see the module);
    ``peer``: what ``get_extra_info("peername")`` gives, as ``(peer, 0)``."""

    def __init__(self, stream: Stream, protocol: asyncio.BaseProtocol, peer: str) -> None:
        super().__init__({"peername": (peer, 0)})
        self._stream, self._protocol = stream, protocol
        self._buffer = bytearray()
        self._to_send = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._eof = self._closing = self._paused = self._lost = False
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump_in(), name=f"http in {peer}"),
            loop.create_task(self._pump_out(), name=f"http out {peer}"),
        ]

    # ------------------------------------------------------- asyncio.Transport

    def is_reading(self) -> bool:
        return self._reading.is_set()

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof or not data:
            return
        self._buffer += data
        self._to_send.set()
        if not self._paused and len(self._buffer) > HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._eof = True
        self._to_send.set()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is buffered, then close the stream."""
        if not self._closing:
            self._closing = self._eof = True
            self._to_send.set()

    def abort(self) -> None:
        """Close the stream now; what is buffered is dropped."""
        self._closing = True
        self._buffer.clear()
        for task in self._tasks:
            task.cancel()
        asyncio.get_running_loop().create_task(self._close_stream())
        self._connection_lost(None)

    # ---------------------------------------------------------------- pumps

    async def _pump_in(self) -> None:
        try:
            while True:
                await self._reading.wait()
                data = await self._stream.receive(65536)
                if not data:
                    self._protocol.eof_received()  # type: ignore[attr-defined]
                    return
                self._protocol.data_received(data)  # type: ignore[attr-defined]
        except TransportError as exc:
            self._connection_lost(exc)

    async def _pump_out(self) -> None:
        try:
            eof_sent = False
            while True:
                await self._to_send.wait()
                self._to_send.clear()
                while self._buffer:
                    chunk = bytes(self._buffer[:_CHUNK])
                    del self._buffer[: len(chunk)]
                    await self._stream.send(chunk)
                    if self._paused and len(self._buffer) <= HIGH_WATER // 4:
                        self._paused = False
                        self._protocol.resume_writing()
                if self._eof and not eof_sent:
                    eof_sent = True
                    await self._stream.send_eof()
                if self._closing:
                    await self._close_stream()
                    self._connection_lost(None)
                    return
        except TransportError as exc:
            self._connection_lost(exc)

    async def _close_stream(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            current = asyncio.current_task()
            for task in self._tasks:
                if task is not current:
                    task.cancel()
            self._protocol.connection_lost(exc)


def stream_connection(
    stream: Stream, peer: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``stream`` as an asyncio reader and writer (call within the event loop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = StreamTransport(stream, protocol, stream.peer if peer is None else peer)
    protocol.connection_made(transport)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def serve_stream(server: HttpServer, stream: Stream, client: str) -> None:
    """Serve HTTP on ``stream`` until it ends, as ``server`` serves a socket it
    accepted; ``client`` is who it is for the per-client limits (a BLE device
    address: ``ble://AA:BB:…``)."""
    reader, writer = stream_connection(stream, client)
    await server.serve_connection(reader, writer, client)


@dataclass(frozen=True)
class HttpAnswer:
    """A response: its status, headers (names in lower case) and whole body."""

    status: int
    headers: dict[str, str]
    body: bytes


class StreamHttpClient:
    """HTTP/1.1 requests on ``stream``, one at a time, the connection kept alive;
    ``host``: the ``Host`` header (the server does not check it)."""

    def __init__(self, stream: Stream, host: str = "lichen") -> None:
        import h11

        self.stream, self.host = stream, host
        self._conn = h11.Connection(h11.CLIENT)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        *,
        max_body: int = 64 * 1024 * 1024,
    ) -> HttpAnswer:
        """Send one request and read its whole answer; a body longer than
        ``max_body`` or a broken stream raises :class:`TransportError`."""
        import h11

        conn = self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        fields = [("host", self.host), *(headers or [])]
        if body is not None:
            fields.append(("content-length", str(len(body))))
        out = conn.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        await self.stream.send(out)
        status, answer, received = 0, {}, bytearray()
        while True:
            item: Any = conn.next_event()
            if item is h11.NEED_DATA:
                conn.receive_data(await self.stream.receive(65536))
            elif isinstance(item, h11.Response):
                status = item.status_code
                answer = {k.decode().lower(): v.decode("latin-1") for k, v in item.headers}
            elif isinstance(item, h11.Data):
                received += item.data
                if len(received) > max_body:
                    raise TransportError(f"a response body longer than {max_body} bytes")
            elif isinstance(item, h11.EndOfMessage):
                return HttpAnswer(status, answer, bytes(received))
            elif isinstance(item, h11.ConnectionClosed):
                raise TransportError("the connection ended before the response did")
