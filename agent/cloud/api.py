"""The cloud's HTTP API: health, feeds, readings as JSON and CSV, bundle uploads.

::

    POST /v1/bundles                 a bundle as the body → what was stored, custody receipts
    GET /health                      {"ok", "broker": {"connected", …}, "sink", "entries", …}
    GET /v1/feeds                    per feed: node id, entries, head, contiguous and acked seq
    GET /v1/readings?node=&collection=&from=&to=&limit=
    GET /v1/readings.csv?…           header: ts_ms,node,collection,<fields…>,quality
    GET /field/…                     Lichen Field, the technicians' web app (agent.field)

Readings are decoded from reading-batch bodies (:func:`agent.readings_export.reading_rows`,
shared with a board's ``lichen log export --csv``); a sealed collection's
entries only where the cloud is one of its readers (docs/fleet.md);
``from`` / ``to`` are reading times in ms since the epoch (``to`` exclusive).
Rows stream from the sink's cursor in small chunks; nothing is held whole.
A bad parameter is a 400 naming it; an unknown path a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from typing import Any

from ..entry import Entry, check_collection
from ..field import field_response
from ..http import Request, Response, json_response
from ..http_messages import (
    App,
    ParameterError,
    int_parameter,
    query_parameters,
    reads_only,
    route_request,
)
from ..identity import NodeId
from ..readings_export import ENTRY_LAG_MS, FORMULA_STARTS, csv_cell, reading_rows
from .sink import EntryQuery, SinkError, SinkReader

__all__ = ["FORMULA_STARTS", "CloudApi", "ReadingsQuery", "csv_cell", "parse_readings_query"]

log = logging.getLogger("lichen.cloud.http")

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 10_000_000
_CHUNK = 64
_PARAMS = ("node", "collection", "from", "to", "limit")


@dataclass(frozen=True)
class ReadingsQuery:
    node: bytes | None = None
    collection: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    limit: int | None = DEFAULT_LIMIT

    def entry_query(self) -> EntryQuery:
        until = None if self.to_ms is None else self.to_ms + ENTRY_LAG_MS
        return EntryQuery(self.node, self.collection, self.from_ms, until)


def parse_readings_query(
    params: list[tuple[str, str]], *, default_limit: int | None = DEFAULT_LIMIT
) -> ReadingsQuery:
    """Check the query parameters; :class:`ParameterError` names the bad one."""
    seen = query_parameters(params, _PARAMS)
    node = None
    if "node" in seen:
        try:
            node = NodeId.parse(seen["node"]).key
        except ValueError as exc:
            raise ParameterError("node", f"is not a node id: {exc}") from None
    collection = seen.get("collection") or None
    if collection is not None:
        try:
            check_collection(collection)
        except ValueError as exc:
            raise ParameterError("collection", str(exc)) from None
    from_ms = int_parameter("from", seen["from"], 0, 2**47) if "from" in seen else None
    to_ms = int_parameter("to", seen["to"], 0, 2**47) if "to" in seen else None
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ParameterError("to", f"({to_ms}) must be after from ({from_ms})")
    limit = (
        int_parameter("limit", seen["limit"], 1, MAX_LIMIT) if "limit" in seen else default_limit
    )
    return ReadingsQuery(node, collection, from_ms, to_ms, limit)


def _take(entries: Iterator[Entry], n: int) -> list[Entry]:
    out = []
    for entry in entries:
        out.append(entry)
        if len(out) >= n:
            break
    return out


class CloudApi:
    """The request handler. ``open_reader`` may block (it runs in a thread);
    ``health`` gives the role's live fields (broker, counters); ``bundles``
    takes ``POST /v1/bundles`` (:class:`agent.cloud.bundles.BundleIntake`)."""

    def __init__(
        self,
        open_reader: Callable[[], SinkReader],
        health: Callable[[], dict[str, Any]],
        bundles: Callable[[Request], Awaitable[Response]] | None = None,
        *,
        readable: Callable[[Iterable[Entry]], Iterable[Entry]] | None = None,
    ) -> None:
        self.open_reader = open_reader
        self.health = health
        self.bundles = bundles
        #: opens the entries of sealed collections the cloud may read, leaving out
        #: the others (:func:`agent.cloud.fleet.sealed_reader`); None: as stored
        self.readable = readable

    async def __call__(self, request: Request) -> Response:
        if (app := field_response(request)) is not None:
            return app
        if request.path.rstrip("/") == "/v1/bundles" and self.bundles is not None:
            if request.method != "POST":
                return Response(
                    405, b'{"error": "POST a bundle here"}\n', headers=[("allow", "POST")]
                )
            return await self.bundles(request)
        if (refusal := reads_only(request)) is not None:
            return refusal
        routes: dict[str, App] = {
            "/health": self._health,
            "/v1/feeds": self._feeds,
            "/v1/readings": self._readings_json,
            "/v1/readings.csv": self._readings_csv,
        }
        try:
            return await route_request(request, routes, request.path.rstrip("/") or "/")
        except SinkError as exc:
            return json_response(503, {"error": str(exc)})

    async def _reader(self) -> SinkReader:
        return await asyncio.to_thread(self.open_reader)

    async def _health(self, _request: Request) -> Response:
        status = dict(self.health())
        try:
            reader = await self._reader()
            try:
                entries, size = await asyncio.to_thread(reader.totals)
            finally:
                await asyncio.to_thread(reader.close)
            status |= {"entries": entries, "bytes": size, "sink_ok": True}
        except SinkError as exc:
            status |= {"entries": None, "sink_ok": False, "sink_error": str(exc)}
        status["ok"] = bool(status.get("running", True)) and status["sink_ok"]
        return json_response(200 if status["ok"] else 503, status)

    async def _feeds(self, request: Request) -> Response:
        if request.query:
            raise ParameterError(request.query[0][0], "is unknown (this path takes none)")
        reader = await self._reader()
        try:
            feeds = await asyncio.to_thread(reader.feeds)
        finally:
            await asyncio.to_thread(reader.close)
        return json_response(200, {"feeds": [f.as_json() for f in feeds]})

    async def rows(
        self, query: ReadingsQuery, reader: SinkReader
    ) -> AsyncGenerator[dict[str, Any]]:
        """Matching rows, pulled from ``reader`` a chunk at a time. Use it under
        :func:`contextlib.aclosing`: closing it closes the cursor."""
        entries = reader.entries(query.entry_query())
        count = 0
        try:
            while chunk := await asyncio.to_thread(_take, entries, _CHUNK):
                for entry in chunk if self.readable is None else self.readable(chunk):
                    for row in reading_rows(entry, query.from_ms, query.to_ms):
                        yield row
                        count += 1
                        if query.limit is not None and count >= query.limit:
                            return
        finally:
            await asyncio.to_thread(_close_quietly, entries)

    def _streamed(
        self, reader: SinkReader, body: AsyncIterator[bytes], content_type: str, **extra: str
    ) -> Response:
        async def close() -> None:
            await asyncio.to_thread(reader.close)

        return Response(
            200, body, content_type=content_type, headers=list(extra.items()), close=close
        )

    async def _readings_json(self, request: Request) -> Response:
        query = parse_readings_query(request.query)
        reader = await self._reader()

        async def body() -> AsyncIterator[bytes]:
            count = 0
            yield b'{"readings":['
            async with contextlib.aclosing(self.rows(query, reader)) as rows:
                async for row in rows:
                    yield (b"," if count else b"") + json.dumps(row, ensure_ascii=False).encode()
                    count += 1
            limited = query.limit is not None and count >= query.limit
            yield f'],"count":{count},"limit_reached":{json.dumps(limited)}}}\n'.encode()

        return self._streamed(reader, body(), "application/json")

    async def _readings_csv(self, request: Request) -> Response:
        query = parse_readings_query(request.query, default_limit=None)
        fields: set[str] = set()
        first = await self._reader()
        try:  # pass 1: the columns, so the header can come first
            async with contextlib.aclosing(self.rows(query, first)) as rows:
                async for row in rows:
                    fields.update(row["values"])
        finally:
            await asyncio.to_thread(first.close)
        columns = sorted(fields)
        reader = await self._reader()

        async def body() -> AsyncIterator[bytes]:
            buffer = io.StringIO()
            # text quoted, numbers not: a spreadsheet reads numbers
            out = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
            out.writerow(["ts_ms", "node", "collection", *map(csv_cell, columns), "quality"])
            async with contextlib.aclosing(self.rows(query, reader)) as rows:
                async for row in rows:
                    values = row["values"]
                    out.writerow(
                        [row["ts_ms"], csv_cell(row["node"]), csv_cell(row["collection"]),
                         *(csv_cell(values.get(c)) for c in columns), csv_cell(row["quality"])]
                    )  # fmt: skip
                    if buffer.tell() > 32768:
                        yield buffer.getvalue().encode()
                        buffer.seek(0)
                        buffer.truncate()
            yield buffer.getvalue().encode()

        return self._streamed(
            reader,
            body(),
            "text/csv; charset=utf-8",
            **{"content-disposition": 'attachment; filename="readings.csv"'},
        )


def _close_quietly(entries: Iterator[Entry]) -> None:
    close = getattr(entries, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:  # the connection went first: nothing left to free
            log.debug("closing a cursor: %r", exc)
