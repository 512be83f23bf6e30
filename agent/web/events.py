"""``GET /api/events``: the dashboard's live updates as server-sent events.

A page opens one :class:`EventSource` and receives::

    event: status          what /api/status answers, each time the agent writes
    data: {…}              its status snapshot (every 2 s)

    event: readings        after each flush that stored readings: per collection,
    data: [{"collection": "readings/climate", "ts_ms": …, "values": {…}}, …]

and a comment line every :data:`KEEPALIVE_S` so proxies and the server notice
a page that went away. A stream subscribes to the node's broadcasts
(:attr:`~agent.node.Node.readings`, :attr:`~agent.node.StatusLoop.snapshots`)
with callbacks that keep only the latest status and the latest reading per
collection: a slow page skips values, it never makes the agent queue them.
At most ``max_streams`` are open at once; one more is a ``503``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..http import Response, json_response

if TYPE_CHECKING:
    from ..link_api import SensorReading
    from ..node import Node, StatusLoop

__all__ = ["KEEPALIVE_S", "EventStreams", "sse_frame"]

KEEPALIVE_S = 15.0
RETRY_MS = 3000


def sse_frame(kind: str, value: Any) -> bytes:
    """One event: its name and its JSON data (one line: JSON has no raw newlines)."""
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {kind}\ndata: {data}\n\n".encode()


class _Stream:
    """What one page has not been sent yet: the latest of each kind."""

    def __init__(self) -> None:
        self.status: dict[str, Any] | None = None
        self.readings: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()

    def on_status(self, status: dict[str, Any]) -> None:
        self.status = status
        self.ready.set()

    def on_readings(self, readings: Sequence[SensorReading]) -> None:
        for r in readings:
            self.readings[r.collection] = {
                "collection": r.collection,
                "sensor": r.sensor,
                "ts_ms": r.ts_ms,
                "values": dict(r.values),
                "quality": r.quality,
            }
        self.ready.set()

    def take(self, view: Callable[[dict[str, Any] | None], dict[str, Any]]) -> list[bytes]:
        frames = []
        if self.status is not None:
            frames.append(sse_frame("status", view(self.status)))
        if self.readings:
            frames.append(sse_frame("readings", list(self.readings.values())))
        self.status, self.readings = None, {}
        self.ready.clear()
        return frames


class EventStreams:
    """The open event streams of one dashboard."""

    def __init__(
        self,
        node: Node,
        status: StatusLoop,
        *,
        max_streams: int,
        view: Callable[[dict[str, Any] | None], dict[str, Any]],
        keepalive: float = KEEPALIVE_S,
    ) -> None:
        """``view(snapshot)``: what a ``status`` event carries for a snapshot."""
        self.node, self.status = node, status
        self.max_streams, self.keepalive = max_streams, keepalive
        self.view = view
        self.open = 0
        self.refused = 0

    def response(self) -> Response:
        """A new stream, or a 503 when ``max_streams`` are open."""
        if self.open >= self.max_streams:
            self.refused += 1
            refusal = json_response(
                503,
                {"error": f"{self.max_streams} live pages are open already ([http] max_streams)"},
            )
            refusal.headers.append(("retry-after", "10"))
            return refusal
        self.open += 1

        async def closed() -> None:  # sent, abandoned, or never started (HEAD)
            self.open -= 1

        return Response(
            200,
            self._events(),
            content_type="text/event-stream; charset=utf-8",
            headers=[("cache-control", "no-store"), ("x-accel-buffering", "no")],
            close=closed,
        )

    async def _events(self) -> AsyncIterator[bytes]:
        stream = _Stream()
        unsubscribe = [
            self.node.readings.subscribe(stream.on_readings),
            self.status.snapshots.subscribe(stream.on_status),
        ]
        try:
            yield f"retry: {RETRY_MS}\n\n".encode() + sse_frame(
                "status", self.view(self.status.latest)
            )
            while True:
                if not await wait_event(stream.ready, self.keepalive):
                    yield b": keepalive\n\n"
                    continue
                for frame in stream.take(self.view):
                    yield frame
        finally:
            for end in unsubscribe:
                end()
