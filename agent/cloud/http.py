"""A small HTTP/1.1 server on asyncio streams and h11 (sans-IO HTTP).

Enough for the cloud's read API: GET/HEAD, keep-alive, and response bodies
streamed chunk by chunk (chunked transfer coding, or close-delimited for an
HTTP/1.0 client), so an export never sits in memory. The application is one
coroutine: ``await app(request) -> Response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..runtime.logs import event

__all__ = ["HttpServer", "Request", "Response", "json_response"]

log = logging.getLogger("lichen.cloud.http")

MAX_HEADER_BYTES = 16 * 1024
IDLE_TIMEOUT_S = 30.0
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            500: b"Internal Server Error", 503: b"Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]


@dataclass
class Response:
    """A status, headers, and a body: bytes, or an async iterator of chunks."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: called once the response is sent or abandoned (frees what the body reads)
    close: Callable[[], Awaitable[None]] | None = None


def json_response(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode() + b"\n")


App = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serves ``app`` on ``host:port`` (port 0: any free port; see :attr:`address`)."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h11

        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            try:
                request = await self._next_request(conn, reader)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, "GET", json_response(400, {"error": str(exc)}))
                return
            if request is None:
                return
            self.requests += 1
            try:
                response = await self.app(request)
            except Exception as exc:  # a bug: say so, keep serving
                event(log, "request failed", logging.ERROR, path=request.path, error=repr(exc))
                response = json_response(500, {"error": f"internal error: {exc}"})
            try:
                await self._send(conn, writer, request.method, response)
            finally:
                if response.close is not None:
                    await response.close()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _next_request(self, conn: Any, reader: asyncio.StreamReader) -> Request | None:
        import h11

        request: Request | None = None
        while True:
            item = conn.next_event()
            if item is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S)
                conn.receive_data(data)
                continue
            if isinstance(item, h11.Request):
                target = item.target.decode("ascii", "replace")
                parts = urlsplit(target)
                request = Request(
                    item.method.decode("ascii", "replace").upper(),
                    parts.path,
                    parse_qsl(parts.query, keep_blank_values=True),
                    {k.decode().lower(): v.decode("latin-1") for k, v in item.headers},
                )
            elif isinstance(item, h11.EndOfMessage):
                return request
            elif isinstance(item, h11.ConnectionClosed) or item is h11.PAUSED:
                return None
            # h11.Data: a request body we do not use; read past it

    async def _send(
        self, conn: Any, writer: asyncio.StreamWriter, method: str, response: Response
    ) -> None:
        import h11

        headers = [("content-type", response.content_type), ("server", "lichen-cloud"),
                   *response.headers]  # fmt: skip
        body = response.body
        if isinstance(body, bytes):
            headers.append(("content-length", str(len(body))))
        writer.write(
            conn.send(
                h11.Response(
                    status_code=response.status,
                    headers=headers,
                    reason=_REASONS.get(response.status, b""),
                )
            )
        )
        if method != "HEAD":
            if isinstance(body, bytes):
                if body:
                    writer.write(conn.send(h11.Data(data=body)))
            else:
                try:
                    async for chunk in body:
                        if chunk:
                            writer.write(conn.send(h11.Data(data=chunk)))
                            await writer.drain()
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # the stream broke half-way: cut the connection
                    event(log, "response stream failed", logging.ERROR, error=repr(exc))
                    raise ConnectionError(str(exc)) from exc
                finally:
                    aclose = getattr(body, "aclose", None)
                    if aclose is not None:
                        await aclose()
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
