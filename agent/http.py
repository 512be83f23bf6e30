"""A small HTTP/1.1 server on asyncio streams and h11 (sans-IO HTTP).

Enough for the cloud's read API: GET/HEAD, keep-alive, and response bodies
streamed chunk by chunk (chunked transfer coding, or close-delimited for an
HTTP/1.0 client), so an export never sits in memory. The application is one
coroutine: ``await app(request) -> Response``.

Two guards, because the clients are not ours:

* **An access token.** With ``token`` set, every request must carry
  ``Authorization: Bearer <token>`` (compared in constant time); anything
  else is a ``401`` with ``WWW-Authenticate: Bearer``.
* **A timeout both ways.** A client that takes longer than ``timeout``
  seconds to send a request, or stops reading a response for that long, is
  dropped (the connection aborted): a stalled export would otherwise hold its
  read cursor — and the log's write-ahead file — forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .aio import cancel_and_wait
from .logs import event

__all__ = ["ClientStalled", "HttpServer", "Request", "Response", "json_response"]

log = logging.getLogger("lichen.http")

MAX_HEADER_BYTES = 16 * 1024
DEFAULT_TIMEOUT_S = 30.0
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            405: b"Method Not Allowed", 500: b"Internal Server Error",
            503: b"Service Unavailable"}  # fmt: skip


class ClientStalled(Exception):
    """The client did not read (or send) for the whole timeout."""


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
    """Serves ``app`` on ``host:port`` (port 0: any free port; see :attr:`address`);
    with ``token``, only to requests that carry it; dropping a client that stalls
    for ``timeout`` seconds."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        *,
        token: str = "",
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.timeout = timeout
        self._expected = f"Bearer {token}".encode() if token else None
        self.requests = 0
        self.refused = 0  # requests without the right token
        self.dropped = 0  # clients dropped for not reading (or not sending) in time
        self.streaming = 0  # responses being sent that hold a reader
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def counters(self) -> dict[str, int]:
        """For status and ``/health``."""
        return {
            "open": len(self._connections),
            "streaming": self.streaming,
            "requests": self.requests,
            "refused": self.refused,
            "dropped": self.dropped,
        }

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
            await cancel_and_wait(self._connections)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except ClientStalled as exc:
            self.dropped += 1
            peer = writer.get_extra_info("peername")
            event(log, "dropped a client", logging.WARNING, peer=str(peer), reason=str(exc))
            writer.transport.abort()  # what it did not read is thrown away
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            writer.transport.abort()
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
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
            response = await self._respond(request)
            streaming = response.close is not None
            self.streaming += streaming
            try:
                await self._send(conn, writer, request.method, response)
            finally:
                self.streaming -= streaming
                if response.close is not None:
                    await response.close()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _respond(self, request: Request) -> Response:
        if self._expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, self._expected):
                self.refused += 1
                return Response(
                    401,
                    b'{"error": "this API needs its access token: Authorization: Bearer TOKEN"}\n',
                    headers=[("www-authenticate", 'Bearer realm="lichen-cloud"')],
                )
        try:
            return await self.app(request)
        except Exception as exc:  # a bug: say so, keep serving
            event(log, "request failed", logging.ERROR, path=request.path, error=repr(exc))
            return json_response(500, {"error": f"internal error: {exc}"})

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        except TimeoutError:
            raise ClientStalled(f"stopped reading for {self.timeout:g} s") from None

    async def _next_request(self, conn: Any, reader: asyncio.StreamReader) -> Request | None:
        import h11

        request: Request | None = None
        while True:
            item = conn.next_event()
            if item is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(self.timeout):
                        data = await reader.read(65536)
                except TimeoutError:
                    if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                        return None  # an idle keep-alive connection: just close it
                    raise ClientStalled(f"sent no complete request in {self.timeout:g} s") from None
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
                            await self._drain(writer)
                except (ConnectionError, ClientStalled, asyncio.CancelledError):
                    raise
                except Exception as exc:  # the stream broke half-way: cut the connection
                    event(log, "response stream failed", logging.ERROR, error=repr(exc))
                    raise ConnectionError(str(exc)) from exc
                finally:
                    aclose = getattr(body, "aclose", None)
                    if aclose is not None:
                        await aclose()
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await self._drain(writer)
