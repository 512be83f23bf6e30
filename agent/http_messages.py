"""An HTTP request and response as the shared server (:mod:`agent.http`) hands
them to its application, and the reading of one request from a connection:
h11 events in, a :class:`Request` out, its body spooled (in memory up to
:data:`SPOOL_MEMORY`, else in a temporary file) and refused past the server's
``max_body`` (:class:`BodyTooLarge`) — from ``Content-Length`` before a byte of
it is read, or while a chunked body passes the limit."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from .errors import LichenError

__all__ = [
    "SPOOL_MEMORY",
    "App",
    "BodyTooLarge",
    "ClientStalled",
    "ParameterError",
    "Request",
    "Response",
    "int_parameter",
    "json_response",
    "parameter_refusal",
    "query_parameters",
    "read_request",
    "reads_only",
    "request_cookies",
    "route_request",
]

#: a request body up to this size stays in memory; a larger one goes to a temporary file
SPOOL_MEMORY = 256 * 1024


class ClientStalled(LichenError, TimeoutError):
    """The client did not read (or send) for the whole timeout; the server drops it."""


@dataclass(frozen=True)
class Request:
    """One request. ``body``: its body, read whole and rewound (in memory up to
    :data:`SPOOL_MEMORY`, else in a temporary file), or None without one;
    closed by the server once the response is sent. ``client``: the peer's host."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: IO[bytes] | None = None
    body_size: int = 0
    client: str = ""


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


class BodyTooLarge(LichenError, ValueError):
    """A request body passed the server's ``max_body`` (answered with 413)."""


def request_cookies(request: Request) -> dict[str, str]:
    """The cookies a request carries (``Cookie: a=1; b=2``)."""
    out: dict[str, str] = {}
    for part in request.headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.setdefault(name, value)
    return out


class ParameterError(LichenError, ValueError):
    """A bad query parameter (answered with 400), naming it."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"parameter {parameter!r} {problem}")
        self.parameter = parameter


def query_parameters(query: list[tuple[str, str]], known: tuple[str, ...]) -> dict[str, str]:
    """A request's query parameters by name; :class:`ParameterError` for one not
    in ``known`` or one given twice."""
    seen: dict[str, str] = {}
    for name, value in query:
        if name not in known:
            raise ParameterError(name, f"is unknown (known: {', '.join(known)})")
        if name in seen:
            raise ParameterError(name, "is given twice")
        seen[name] = value
    return seen


def reads_only(request: Request) -> Response | None:
    """``405`` for a request other than ``GET`` or ``HEAD`` (None: it is one)."""
    if request.method in ("GET", "HEAD"):
        return None
    return Response(405, b'{"error": "only GET and HEAD"}\n', headers=[("allow", "GET, HEAD")])


def parameter_refusal(exc: ParameterError) -> Response:
    """The ``400`` answering a bad query parameter, naming it."""
    return json_response(400, {"error": str(exc), "parameter": exc.parameter})


async def route_request(request: Request, routes: Mapping[str, App], path: str) -> Response:
    """Answer ``request`` with the handler ``routes`` holds for ``path``: ``404``
    naming the path when there is none, ``400`` when the handler refuses a
    query parameter (:class:`ParameterError`)."""
    route = routes.get(path)
    if route is None:
        return json_response(404, {"error": f"no such path: {request.path}"})
    try:
        return await route(request)
    except ParameterError as exc:
        return parameter_refusal(exc)


def int_parameter(name: str, text: str, low: int, high: int) -> int:
    """The query parameter ``name``'s value ``text`` as an integer from ``low`` to ``high``."""
    try:
        value = int(text)
    except ValueError:
        raise ParameterError(name, f"must be an integer, not {text!r}") from None
    if not low <= value <= high:
        raise ParameterError(name, f"must be between {low} and {high}, not {value}")
    return value


def check_declared_length(headers: dict[str, str], max_body: int) -> None:
    """Refuse a body whose declared length passes the limit, before reading it."""
    declared = headers.get("content-length")
    if max_body and declared is not None and declared.isdigit() and int(declared) > max_body:
        raise BodyTooLarge(_too_large_text(int(declared), max_body))


def _too_large_text(size: int | None, max_body: int) -> str:
    what = f"{size} bytes" if size is not None else "more"
    return f"the request body ({what}) exceeds the limit of {max_body} bytes"


async def read_request(
    conn: Any,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None = None,
    client: str = "",
    *,
    timeout: float,
    max_body: int,
    spool_dir: Path | None = None,
) -> Request | None:
    """The next whole request (its body spooled), or None at the connection's
    end. Raises :class:`BodyTooLarge` for a body past ``max_body``."""
    import h11

    request: Request | None = None
    spool: IO[bytes] | None = None
    size = 0
    try:
        while True:
            item = conn.next_event()
            if item is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(timeout):
                        data = await reader.read(65536)
                except TimeoutError:
                    if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                        return None  # an idle keep-alive connection: just close it
                    raise ClientStalled(f"sent no complete request in {timeout:g} s") from None
                conn.receive_data(data)
                continue
            if isinstance(item, h11.Request):
                target = item.target.decode("ascii", "replace")
                parts = urlsplit(target)
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in item.headers}
                request = Request(
                    item.method.decode("ascii", "replace").upper(),
                    parts.path,
                    parse_qsl(parts.query, keep_blank_values=True),
                    headers,
                    client=client,
                )
                check_declared_length(headers, max_body)
                if conn.they_are_waiting_for_100_continue and writer is not None:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            elif isinstance(item, h11.Data):
                if not max_body:
                    continue  # a server that takes no body reads past it
                size += len(item.data)
                if size > max_body:
                    raise BodyTooLarge(_too_large_text(None, max_body))
                if spool is None:
                    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by _serve)
                        max_size=SPOOL_MEMORY,
                        dir=None if spool_dir is None else str(spool_dir),
                    )
                await _spool_write(spool, bytes(item.data))
            elif isinstance(item, h11.EndOfMessage):
                if request is not None and spool is not None:
                    spool.seek(0)
                    request = Request(request.method, request.path, request.query,
                                      request.headers, spool, size, client)  # fmt: skip
                    spool = None
                return request
            elif isinstance(item, h11.ConnectionClosed) or item is h11.PAUSED:
                return None
    finally:
        if spool is not None:
            spool.close()


async def _spool_write(spool: IO[bytes], data: bytes) -> None:
    """Write to a spool: in memory at once; once it went to disk, off the event loop."""
    if getattr(spool, "_rolled", True):
        await asyncio.to_thread(spool.write, data)
    else:
        spool.write(data)
