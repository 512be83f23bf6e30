"""A :class:`~agent.plugin_api.Stream` over asyncio's StreamReader/StreamWriter.

OS and asyncio errors are translated into :class:`~agent.errors.TransportError`
here, where they enter, so nothing above a transport ever sees
``ConnectionResetError``, ``BrokenPipeError`` or a half-dead transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

from ..errors import TransportError
from ._base import StreamBase

__all__ = ["AsyncioStream", "tune_tcp_socket"]

#: most a peer may take to close gracefully before the connection is reset
_CLOSE_TIMEOUT_S = 5.0


@contextlib.contextmanager
def _translated(peer: str, doing: str) -> Iterator[None]:
    try:
        yield
    except TransportError:
        raise
    except (OSError, EOFError) as exc:  # ConnectionError, BrokenPipeError, TimeoutError …
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TransportError(f"{doing} {peer}: {reason or type(exc).__name__}") from exc


class AsyncioStream(StreamBase):
    """A reliable byte stream over an asyncio connection (TCP, a Unix socket, a pipe).

    ``peer`` is the address to show (``tcp://192.168.1.20:7400``);
    ``max_frame_hint`` what protocols should size their frames by (for TCP,
    the segment size). ``send`` returns once the bytes are in the kernel or
    below asyncio's low-water mark, so a peer that stops reading stops the
    sender once the socket buffers are full. ``close`` flushes what was sent
    and closes (a FIN); if the peer does not take it within ``close_timeout``
    seconds, or a send of ours is still waiting, the connection is reset.

    ::

        reader, writer = await asyncio.open_connection(host, port)
        stream = AsyncioStream(reader, writer, peer=f"tcp://{host}:{port}")
        await stream.send(b"hello")
        reply = await stream.receive()
        await stream.close()
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str | None = None,
        max_frame_hint: int = 65536,
        close_timeout: float = _CLOSE_TIMEOUT_S,
    ) -> None:
        if peer is None:
            name = writer.get_extra_info("peername")
            peer = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
        super().__init__(peer=peer, max_frame_hint=max_frame_hint)
        self._reader = reader
        self._writer = writer
        self._close_timeout = close_timeout
        self._eof_sent = False
        self._sending = 0

    async def send(self, data: bytes) -> None:
        self._check_send()
        if self._eof_sent:
            raise TransportError(f"send after send_eof to {self._peer}")
        if self._writer.transport.is_closing():
            raise TransportError(f"the connection to {self._peer} is closed")
        if not data:
            return
        self._sending += 1
        try:
            with _translated(self._peer, "sending to"):
                self._writer.write(data)
                await self._writer.drain()
        finally:
            self._sending -= 1
        if self._closed:
            raise TransportError(f"the stream to {self._peer} was closed during a send")

    async def send_eof(self) -> None:
        if self._closed or self._eof_sent:
            return
        self._eof_sent = True
        if self._writer.transport.is_closing():
            return
        with _translated(self._peer, "half-closing to"):
            self._writer.write_eof()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self._check_receive(max_bytes)
        with _translated(self._peer, "receiving from"):
            return await self._reader.read(max_bytes)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self._writer.transport
        if self._sending:  # its bytes cannot go out in time: reset
            transport.abort()
        else:
            self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), self._close_timeout)
        except (OSError, TimeoutError):
            transport.abort()
        except BaseException:  # cancelled: do not leave the socket behind
            transport.abort()
            raise

    def abort(self) -> None:
        """Reset the connection at once (a TCP RST): unsent bytes are dropped."""
        self._closed = True
        self._writer.transport.abort()

    def __repr__(self) -> str:
        return f"<AsyncioStream to {self._peer}{' closed' if self._closed else ''}>"


def tune_tcp_socket(
    sock: socket.socket | None,
    *,
    nodelay: bool = True,
    keepalive: tuple[float, float, int] | None = None,
    user_timeout: float = 0.0,
) -> None:
    """Set TCP options on a connected socket; an option the OS lacks is skipped.

    ``keepalive`` is ``(idle, interval, count)``: probe after ``idle`` seconds
    of silence, every ``interval`` seconds, and give up after ``count``
    unanswered probes. ``user_timeout`` (seconds, 0 = the OS default) bounds
    how long sent data may stay unacknowledged before the connection fails."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    options: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))]
    if keepalive is not None:
        idle, interval, count = keepalive
        options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
        for name, value in (
            ("TCP_KEEPIDLE", max(1, round(idle))),
            ("TCP_KEEPINTVL", max(1, round(interval))),
            ("TCP_KEEPCNT", max(1, count)),
        ):
            if hasattr(socket, name):
                options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    if user_timeout > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(user_timeout * 1000)))
    for level, option, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)
