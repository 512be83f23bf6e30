"""A small HTTP/1.1 server on asyncio streams and h11 (sans-IO HTTP).

Enough for the cloud's API, a board's mule exchange and its dashboard:
keep-alive, response bodies streamed chunk by chunk (chunked transfer coding,
or close-delimited for an HTTP/1.0 client), so an export never sits in memory
and an event stream (``text/event-stream``) stays open as long as its body
iterates, and request
bodies (POST) up to ``max_body`` bytes, spooled to a temporary file past
256 KiB (:attr:`Request.body`), so an upload never sits in memory either.
The application is one coroutine: ``await app(request) -> Response``.

The guards, because the clients are not ours:

* **An access token.** With ``token`` set, every request must carry
  ``Authorization: Bearer <token>`` (compared in constant time); anything
  else is a ``401`` with ``WWW-Authenticate: Bearer``. For a browser, which
  cannot send that header by itself, ``login_cookie`` names a cookie that
  carries the token instead: a ``GET`` with ``?token=TOKEN`` is answered with a
  redirect to the same address without it, setting the cookie (``HttpOnly``,
  ``SameSite=Strict``), so the token leaves the address bar and the history.
* **The Host header.** With ``allowed_hosts`` (a server on loopback with no
  token), a request naming any other host is refused with ``403``: a web page
  elsewhere cannot reach the server through a DNS name rebound to 127.0.0.1.
* **A timeout both ways.** A client that takes longer than ``timeout``
  seconds to send a request, or stops reading a response for that long, is
  dropped (the connection aborted): a stalled export would otherwise hold its
  read cursor — and the log's write-ahead file — forever.
* **A body limit.** A request whose body is larger than ``max_body`` is
  answered ``413`` as soon as its length is known — from ``Content-Length``
  before a byte of it is read, or while a chunked body passes the limit — and
  the connection is closed. A server with ``max_body = 0`` takes no bodies:
  it reads past them, keeping none (the application sees ``body = None``).
* **Connections per client.** With ``max_per_client``, a host with that many
  connections open gets ``429`` on the next one, which is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .aio import cancel_and_wait
from .errors import ServeError
from .http_auth import AccessGate
from .http_messages import (
    SPOOL_MEMORY,
    App,
    BodyTooLarge,
    ClientStalled,
    Request,
    Response,
    json_response,
    read_request,
    request_cookies,
)
from .logs import event

__all__ = [
    "SPOOL_MEMORY",
    "App",
    "ClientStalled",
    "HttpServer",
    "Request",
    "Response",
    "ServeError",
    "json_response",
    "request_cookies",
]

log = logging.getLogger("lichen.http")

MAX_HEADER_BYTES = 16 * 1024
DEFAULT_TIMEOUT_S = 30.0
#: after refusing a body, what of it is still read (and thrown away) so the client
#: sees the answer instead of a reset connection
_LINGER_BYTES = 8 * 1024 * 1024
_LINGER_S = 2.0
_REASONS = {200: b"OK", 303: b"See Other", 400: b"Bad Request", 401: b"Unauthorized",
            403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed", 409: b"Conflict",
            413: b"Content Too Large", 422: b"Unprocessable Content",
            429: b"Too Many Requests", 500: b"Internal Server Error",
            503: b"Service Unavailable"}  # fmt: skip


class HttpServer:
    """Serves ``app`` on ``host:port`` (port 0: any free port; see :attr:`address`);
    with ``token``, only to requests that carry it; dropping a client that stalls
    for ``timeout`` seconds; taking request bodies of up to ``max_body`` bytes
    (spooled in ``spool_dir``, the system's temporary directory by default); at
    most ``max_per_client`` connections from one host (0: no limit). With
    ``login_cookie``, the token may come in that cookie (set by a ``?token=``
    link); with ``allowed_hosts``, only requests whose ``Host`` is one of them
    (``HOST:PORT`` with the port the server got) are served; ``open_paths``
    (``/field``: that path and everything under it) are served to a ``GET`` or
    ``HEAD`` without the token. ``server_name``:
    the ``Server`` header and the token's realm. ``serves`` (what it serves, for
    people) and ``address_fix`` (where its address is set) word the
    :class:`~agent.errors.ServeError` that :meth:`start` raises when it cannot
    listen."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        *,
        token: str = "",
        timeout: float = DEFAULT_TIMEOUT_S,
        max_body: int = 0,
        spool_dir: Path | None = None,
        max_per_client: int = 0,
        server_name: str = "lichen",
        login_cookie: str | None = None,
        allowed_hosts: Collection[str] | None = None,
        open_paths: Collection[str] = (),
        serves: str = "HTTP",
        address_fix: str = "another HOST:PORT (port 0 picks a free one)",
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_body = max_body
        self.spool_dir = spool_dir
        self.max_per_client = max_per_client
        self.server_name = server_name
        self.serves = serves
        self.address_fix = address_fix
        self.gate = AccessGate(
            token=token,
            login_cookie=login_cookie,
            allowed_hosts=allowed_hosts,
            open_paths=open_paths,
            realm=server_name,
        )
        self.requests = 0
        self.refused = 0  # requests without the right token
        self.dropped = 0  # clients dropped for not reading (or not sending) in time
        self.too_large = 0  # request bodies refused for their size
        self.crowded = 0  # connections refused: their host had max_per_client open
        self.streaming = 0  # responses being sent that hold a reader
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._per_client: dict[str, int] = {}

    def counters(self) -> dict[str, int]:
        """For status and ``/health``."""
        return {
            "open": len(self._connections),
            "streaming": self.streaming,
            "requests": self.requests,
            "refused": self.refused,
            "dropped": self.dropped,
            "too_large": self.too_large,
            "crowded": self.crowded,
        }

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Listen on :attr:`address`; :class:`~agent.errors.ServeError` (an
        ``OSError`` too) names the address, the system's reason and the fix."""
        if self.spool_dir is not None and self.max_body:
            try:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                fix = f"make {self.spool_dir.parent} writable by this user"
                raise ServeError.of(exc, self.serves, self.address, fix) from None
        try:
            self._server = await asyncio.start_server(self.serve_connection, self.host, self.port)
        except OSError as exc:
            fix = self.address_fix
            raise ServeError.of(exc, self.serves, self.address, fix, self.host) from None
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening; end every connection (of :meth:`serve_connection` too)."""
        if self._server is not None:
            self._server.close()
        await cancel_and_wait(self._connections)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str | None = None
    ) -> None:
        """Serve one connection, with every guard: a socket accepted, or any byte
        stream as a reader and writer (:mod:`agent.http_stream`). ``client``: who
        it is, for ``max_per_client`` and ``Request.client`` (default: its IP)."""
        task = asyncio.current_task()
        assert task is not None
        if client is None:
            peer = writer.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self.max_per_client and self._per_client.get(client, 0) >= self.max_per_client:
            self.crowded += 1
            body = (f'{{"error": "{self.max_per_client} connections from {client} are open '
                    'already: use one of them"}\n').encode()  # fmt: skip
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await writer.drain()
            writer.close()
            return
        self._per_client[client] = self._per_client.get(client, 0) + 1
        self._connections.add(task)
        try:
            await self._serve(reader, writer, client)
        except ClientStalled as exc:
            self.dropped += 1
            peer = writer.get_extra_info("peername")
            event(log, "dropped a client", logging.WARNING, peer=str(peer), reason=str(exc))
            writer.transport.abort()  # what it did not read is thrown away
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # the server is closing: end quietly (Python 3.11's start_server callback
            # asks a cancelled connection task for its exception, and logs a traceback)
            writer.transport.abort()
        finally:
            self._connections.discard(task)
            left = self._per_client.pop(client, 1) - 1
            if left > 0:
                self._per_client[client] = left
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str = ""
    ) -> None:
        import h11

        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            try:
                request = await read_request(
                    conn, reader, writer, client,
                    timeout=self.timeout, max_body=self.max_body, spool_dir=self.spool_dir,
                )  # fmt: skip
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, "GET", json_response(400, {"error": str(exc)}))
                return
            except BodyTooLarge as exc:
                self.too_large += 1
                await self._send(conn, writer, "POST", json_response(413, {"error": str(exc)}))
                await self._linger(reader, writer)
                return
            if request is None:
                return
            self.requests += 1
            try:
                response = await self._respond(request)
                streaming = response.close is not None
                self.streaming += streaming
                try:
                    await self._send(conn, writer, request.method, response)
                finally:
                    self.streaming -= streaming
                    if response.close is not None:
                        await response.close()
            finally:
                if request.body is not None:
                    request.body.close()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _respond(self, request: Request) -> Response:
        answer = self.gate.check(request, self.port)
        if answer is not None:
            self.refused += AccessGate.refused(answer)
            return answer
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

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After refusing a body: stop sending, and read (and drop) a bounded part
        of what the client still sends, so it reads the refusal rather than a
        reset connection."""
        with contextlib.suppress(Exception):
            writer.write_eof()
        read = 0
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_LINGER_S):
                while read < _LINGER_BYTES and (data := await reader.read(65536)):
                    read += len(data)

    async def _send(
        self, conn: Any, writer: asyncio.StreamWriter, method: str, response: Response
    ) -> None:
        import h11

        headers = [("content-type", response.content_type), ("server", self.server_name),
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
