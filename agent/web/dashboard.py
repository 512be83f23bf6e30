"""The board's dashboard: its page, JSON API, event stream, bundle and metrics.

Served by the shared :class:`~agent.http.HttpServer` while the agent runs
(``lichen run --http 127.0.0.1:8470``, or ``[http] listen``)::

    GET /                  the page (static files from agent/web/static, no CDN)
    GET /static/NAME       its script and style sheet
    GET /api/status        the last status snapshot, peers, disk, node name
    GET /api/readings      the newest readings of a collection (agent.web.readings)
    GET /api/events        live updates, server-sent events (agent.web.events)
    GET /bundle            a bundle of the whole log, streamed (lichen bundle import)
    GET /metrics           Prometheus text exposition (agent.web.metrics)

On loopback it needs no token but serves only requests whose ``Host`` names
loopback (no DNS rebinding); beyond loopback, or with ``token_on_loopback``,
every request needs the node's token (header, or the cookie ``?token=`` sets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..config.cloud import is_loopback
from ..errors import ConfigError, LichenError
from ..http import HttpServer, Request, Response, json_response
from ..http_messages import App, ParameterError, reads_only, route_request
from ..logs import event
from .events import EventStreams
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import render_metrics
from .readings import ReadingsRequest, latest_readings
from .token import TOKEN_COOKIE, load_token

if TYPE_CHECKING:
    from ..config import Config
    from ..fleet import FleetSealing
    from ..home import Home
    from ..mesh.peerbook import PeerBook
    from ..node import Node, StatusLoop

__all__ = ["Dashboard"]

log = logging.getLogger("lichen.dashboard")

_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "plot.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "base.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_BUNDLE_CHUNK = 64 * 1024
#: a page may be framed by no one, run no script but ours, and send nothing elsewhere
_PAGE_HEADERS = [
    ("content-security-policy",
     "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
]  # fmt: skip


def _static(name: str) -> bytes:
    return resources.files("agent.web").joinpath("static", name).read_bytes()


class Dashboard:
    """The dashboard of a running node. ``book()``: the gossip's peer book, or None
    when no gossip runs (the home's file is read then)."""

    def __init__(
        self,
        home: Home,
        config: Config,
        node: Node,
        status: StatusLoop,
        *,
        book: Callable[[], PeerBook | None] = lambda: None,
    ) -> None:
        address = config.http.address
        if address is None:
            raise LichenError("the dashboard is off ([http] listen)")
        host, port = address
        self.home, self.node, self.status_loop, self.book = home, node, status, book
        self.name = config.node.name
        self._sealing: FleetSealing | None = None
        self.token = ""
        if config.http.needs_token:
            token = load_token(home.http_token)
            if token is None:
                raise ConfigError(
                    f"serving the dashboard on {config.http.listen} needs the node's access token, "
                    f"and {home.http_token} has none yet",
                    file=config.path,
                    key="[http] listen",
                    fix=f"lichen --home {home.path} http token (makes one and prints it), then "
                    'start again; or listen on loopback (listen = "127.0.0.1:8470")',
                )
            self.token = token
        self.loopback = is_loopback(host)
        allowed = None
        if not self.token:
            bound = f"[{host}]" if ":" in host else host
            allowed = sorted({*_LOOPBACK_NAMES, bound.lower()})
        self.streams = EventStreams(node, status, max_streams=config.http.max_streams,
                                    view=self._view)  # fmt: skip
        self.server = HttpServer(
            self,
            host,
            port,
            token=self.token,
            timeout=config.http.timeout,
            server_name="lichen",
            login_cookie=TOKEN_COOKIE,
            allowed_hosts=allowed,
            serves="the dashboard",
            address_fix="[http] listen or --http HOST:PORT (port 0 picks a free one; off: none)",
        )

    @property
    def url(self) -> str:
        return f"http://{self.server.address}/"

    async def start(self) -> None:
        await self.server.start()  # a ServeError names the address, the reason and the fix
        event(log, "dashboard", url=self.url,
              token="required: lichen http url" if self.token else "none (loopback)")  # fmt: skip

    async def close(self) -> None:
        await self.server.close()

    def status(self) -> dict[str, Any]:
        """The ``http`` part of the agent's status snapshot."""
        return {
            "address": self.server.address,
            "url": self.url,
            "token": bool(self.token),
            "streams": self.streams.open,
            **self.server.counters(),
        }

    # ------------------------------------------------------------- routes

    async def __call__(self, request: Request) -> Response:
        if (refusal := reads_only(request)) is not None:
            return refusal
        path = request.path
        if path in ("/", "/index.html"):
            return Response(200, _static("index.html"), "text/html; charset=utf-8",
                            list(_PAGE_HEADERS))  # fmt: skip
        if path.startswith("/static/") and path[8:] in _STATIC:
            return Response(200, _static(path[8:]), _STATIC[path[8:]], list(_PAGE_HEADERS))
        routes: dict[str, App] = {
            "/api/status": self._status,
            "/api/readings": self._readings,
            "/api/events": self._events,
            "/bundle": self._bundle,
            "/metrics": self._metrics,
        }
        return await route_request(request, routes, path)

    def _snapshot(self) -> dict[str, Any] | None:
        """The status snapshot the agent wrote last (never computed again here)."""
        return self.status_loop.latest

    def _peer_records(self) -> list[dict[str, Any]]:
        book = self.book()
        if book is None:
            from ..mesh.peerbook import PeerBook

            book = PeerBook(self.home.peer_book)
        return [asdict(p) for p in book.all()]

    def _disk(self) -> tuple[int, int] | None:
        try:
            stats = os.statvfs(self.home.path)
        except OSError:
            return None
        return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize

    def _view(self, snapshot: dict[str, Any] | None) -> dict[str, Any]:
        """What the page shows: a status snapshot with the peers and the disk."""
        disk = self._disk()
        return {
            "node": {"id": str(self.node.identity.node_id), "name": self.name},
            "now_ms": time.time_ns() // 1_000_000,
            "status": snapshot,
            "peers": self._peer_records(),
            "disk": None if disk is None else {"free": disk[0], "total": disk[1]},
        }

    async def _status(self, request: Request) -> Response:
        _no_parameters(request)
        return json_response(200, self._view(self._snapshot()))

    async def _readings(self, request: Request) -> Response:
        query = ReadingsRequest.parse(request.query)
        me = self.node.identity.node_id
        if self._sealing is None:  # in a fleet: its own sealed readings are opened
            from ..fleet import fleet_sealing

            node = self.node
            self._sealing = fleet_sealing(self.home.fleet_file, node.reader, node.identity)
        readable = None if self._sealing is None else self._sealing.readable
        answer = latest_readings(self.node.reader, me.key, str(me), query, readable=readable)
        return json_response(200, answer)

    async def _events(self, request: Request) -> Response:
        _no_parameters(request)
        return self.streams.response()

    async def _metrics(self, request: Request) -> Response:
        _no_parameters(request)
        status = self._snapshot()
        if status is None:
            return json_response(503, {"error": "no status snapshot yet"})
        text = render_metrics(
            status,
            name=self.name,
            peers=self._peer_records(),
            disk=self._disk(),
            http=self.server.counters() | {"streams": self.streams.open},
            now_ms=time.time_ns() // 1_000_000,
        )
        return Response(200, text.encode(), METRICS_TYPE)

    async def _bundle(self, request: Request) -> Response:
        """The whole log as a bundle, made while it is sent (its own read connection)."""
        _no_parameters(request)
        from ..bundle.export import BundleStream

        store = await asyncio.to_thread(self.node.open_store)
        chunks = iter(BundleStream(store, self.node.identity))

        async def body() -> AsyncIterator[bytes]:
            while data := await asyncio.to_thread(_take_bytes, chunks, _BUNDLE_CHUNK):
                yield data

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.close)

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        label = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name) or "lichen"
        return Response(
            200,
            body(),
            "application/octet-stream",
            [("content-disposition", f'attachment; filename="{label}-{stamp}.lcb"'),
             ("cache-control", "no-store")],
            close=close,
        )  # fmt: skip


def _no_parameters(request: Request) -> None:
    if request.query:
        raise ParameterError(request.query[0][0], "is unknown (this path takes none)")


def _take_bytes(chunks: Iterator[bytes], size: int) -> bytes:
    """At least ``size`` bytes from ``chunks`` (fewer at the end; b"" when done)."""
    out: list[bytes] = []
    total = 0
    for data in chunks:
        out.append(data)
        total += len(data)
        if total >= size:
            break
    return b"".join(out)
