"""The mule exchange over HTTP: a board's side (docs/field.md).

::

    GET  /mule/v1/info?since=CURSOR            who the board is; what is not carried yet
    GET  /mule/v1/bundle?since=CURSOR&budget=BYTES[&public=1]
                                               the next bundle (sealed), streamed;
                                               the cursor after it in Lichen-Cursor
    POST /mule/v1/handover                     an entry batch of accepted clouds' entries

Served without a token to keyless phones on the board's network, so it only
serves bundles sealed to the board's cloud (or, with ``public=1``, the
collections ``[mule] public`` declares) and only takes entries its accepted
clouds signed; each client is held to ``[mule] rate`` requests a minute (the
server adds the body limit and ``per_client`` connections). CORS is open
(``*``, no credentials): nothing here depends on who the caller is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..bundle.writer import BundleWriter
from ..entry import Entry
from ..http import Request, Response, json_response
from ..http_messages import ParameterError, parameter_refusal
from ..identity import NodeId
from ..mesh.admission import TokenBucket
from ..node import Node
from ..store.log_store import InsertOutcome, LogStore
from ..uplink.wire import BatchError
from .cursor import Cursor, CursorError
from .handover import batch_error, screen_handover
from .plan import CarryPlan, Pending, pending, plan_carry, rows

__all__ = ["BUNDLE_TYPE", "ENTRIES_TYPE", "MuleApi", "MuleRules"]

BUNDLE_TYPE = "application/vnd.lichen.bundle"
ENTRIES_TYPE = "application/vnd.lichen.entries+cbor"
MIN_BUDGET = 4096
DEFAULT_BUDGET = 1024 * 1024
_STEP_BYTES = 64 * 1024  # entry bytes read and written per step off the event loop
_CLIENTS = 4096  # per-client rate state kept (the least recently used goes first)
_EXPOSED = "lichen-cursor, lichen-entries, lichen-complete, lichen-sealed-to, lichen-pending"
_NOTHING_PUBLIC = {
    "error": "no collection of this board is public ([mule] public): its bundles are sealed only"
}
_NO_CLOUD = {
    "error": "this board knows no cloud to seal its bundles to, and serves nothing unsealed "
    "but its public collections (public=1)",
    "fix": '[retention] ack_from = ["lc1…"] (or [mule] seal_to) on the board',
}
_CORS = [("access-control-allow-origin", "*"), ("access-control-expose-headers", _EXPOSED)]


@dataclass(frozen=True)
class MuleRules:
    """What the exchange serves and takes: the node's name, the public
    collection patterns, the largest budget and handover, requests per minute."""

    name: str = ""
    public: tuple[str, ...] = ()
    max_budget: int = 16 * 1024 * 1024
    max_handover: int = 1024 * 1024
    rate_per_minute: float = 60.0
    max_entry_size: int = 16 * 1024
    #: bundles streamed at once, whoever asks (each holds a read of the log)
    max_streams: int = 4


class MuleApi:
    """The request handler. ``clouds()``: the accepted clouds now; ``seal_to()``:
    the cloud bundles are sealed to (None: none known); ``took(entries)``: what
    a handover stored, for the acknowledgements to be applied."""

    def __init__(
        self,
        node: Node,
        rules: MuleRules,
        *,
        clouds: Callable[[], frozenset[bytes]],
        seal_to: Callable[[], bytes | None],
        took: Callable[[list[Entry]], Awaitable[None]],
    ) -> None:
        self.node, self.rules = node, rules
        self.clouds, self.seal_to, self.took = clouds, seal_to, took
        self.own = node.identity.node_id.key
        self.stats = {
            "bundles": 0,
            "bundle_entries": 0,
            "handovers": 0,
            "handover_entries": 0,
            "refused": 0,
            "rate_limited": 0,
        }
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._streams = 0

    async def __call__(self, request: Request) -> Response:
        if request.method == "OPTIONS":  # a browser's preflight
            return Response(
                200,
                headers=[
                    *_CORS,
                    ("access-control-allow-methods", "GET, POST"),
                    ("access-control-allow-headers", "content-type"),
                    ("access-control-allow-private-network", "true"),
                    ("access-control-max-age", "600"),
                ],
            )
        route = {
            ("GET", "/mule/v1/info"): self._info,
            ("HEAD", "/mule/v1/info"): self._info,
            ("GET", "/mule/v1/bundle"): self._bundle,
            ("POST", "/mule/v1/handover"): self._handover,
        }.get((request.method, request.path.rstrip("/")))
        if route is None:
            known = request.path.rstrip("/") in (
                "/mule/v1/info",
                "/mule/v1/bundle",
                "/mule/v1/handover",
            )
            if known:
                return self._cors(json_response(405, {"error": f"not with {request.method}"}))
            return self._cors(json_response(404, {"error": f"no such path: {request.path}"}))
        if not self._admit(request.client):
            self.stats["rate_limited"] += 1
            limit = json_response(
                429,
                {
                    "error": f"more than {self.rules.rate_per_minute:g} "
                    "requests a minute from this client; wait"
                },
            )
            limit.headers.append(("retry-after", "5"))
            return self._cors(limit)
        try:
            return self._cors(await route(request))
        except CursorError as exc:
            self.stats["refused"] += 1
            return self._cors(json_response(400, {"error": str(exc), "parameter": "since"}))

    @staticmethod
    def _cors(response: Response) -> Response:
        response.headers.extend(_CORS)
        return response

    def _admit(self, client: str) -> bool:
        now = time.monotonic()
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            rate = self.rules.rate_per_minute
            bucket = TokenBucket(rate / 60.0, max(4.0, rate / 4), now)
        self._buckets[client] = bucket
        while len(self._buckets) > _CLIENTS:
            self._buckets.popitem(last=False)
        return bucket.take(now)

    @staticmethod
    def _param(request: Request, name: str, default: str = "") -> str:
        values = [v for k, v in request.query if k == name]
        return values[-1] if values else default

    def _cursor(self, request: Request) -> Cursor:
        return Cursor.decode(self._param(request, "since"), self.own)

    # ------------------------------------------------------------------ info

    async def _info(self, request: Request) -> Response:
        cursor = self._cursor(request)
        clouds = self.clouds()
        seal = self.seal_to()
        waiting = await asyncio.to_thread(self._pending, cursor, clouds)
        heads = [
            {"node": str(NodeId(h.author)), "seq": h.seq, "own": h.author == self.own}
            for h in self.node.reader.heads()
            if h.author not in clouds
        ]
        heads.sort(key=lambda h: not h["own"])
        me = self.node.identity.node_id
        body: dict[str, Any] = {
            "exchange": 1,
            "node_id": str(me),
            "fingerprint": me.fingerprint,
            "name": self.rules.name,
            "sealed_to": None if seal is None else str(NodeId(seal)),
            "public": list(self.rules.public),
            "heads": heads[:256],
            "feeds": len(heads),
            "pending": {"entries": waiting.entries, "bytes": waiting.bytes, "feeds": waiting.feeds},
            "limits": {
                "max_budget": self.rules.max_budget,
                "max_handover": self.rules.max_handover,
            },
        }
        return json_response(200, body)

    def _pending(self, cursor: Cursor, clouds: frozenset[bytes]) -> Pending:
        store = self.node.open_store()
        try:
            return pending(store, cursor, own=self.own, clouds=clouds)
        finally:
            store.close()

    # ---------------------------------------------------------------- bundle

    def _budget(self, request: Request) -> int:
        text = self._param(request, "budget", str(min(DEFAULT_BUDGET, self.rules.max_budget)))
        if not text.isdigit() or not MIN_BUDGET <= int(text) <= self.rules.max_budget:
            raise ParameterError(
                "budget",
                f"must be bytes from {MIN_BUDGET} to {self.rules.max_budget}, not {text!r}",
            )
        return int(text)

    async def _bundle(self, request: Request) -> Response:
        cursor = self._cursor(request)
        try:
            budget = self._budget(request)
        except ParameterError as exc:
            return parameter_refusal(exc)
        public = self._param(request, "public") in ("1", "true")
        seal: bytes | None = None
        patterns: tuple[str, ...] = ()
        if public:
            patterns = self.rules.public
            if not patterns:
                return json_response(403, _NOTHING_PUBLIC)
        else:
            seal = self.seal_to()
            if seal is None:
                return json_response(409, _NO_CLOUD)
        if self._streams >= self.rules.max_streams:
            busy = json_response(
                503, {"error": f"{self._streams} bundles are being sent; ask again in a moment"}
            )
            busy.headers.append(("retry-after", "2"))
            return busy
        self._streams += 1
        store: LogStore | None = None

        def release() -> None:
            self._streams -= 1
            if store is not None:
                store.close()

        try:
            store = await asyncio.to_thread(self.node.open_store)
            plan = await asyncio.to_thread(
                plan_carry,
                store,
                cursor,
                budget,
                own=self.own,
                clouds=self.clouds(),
                collections=patterns,
            )
        except BaseException:
            release()
            raise
        if plan.first_too_large:
            release()
            return json_response(
                400,
                {
                    "parameter": "budget",
                    "error": f"a budget of {budget} "
                    f"bytes leaves no room for the next entry "
                    f"({plan.first_too_large} bytes); ask for more",
                },
            )
        assert plan.cursor is not None
        writer = BundleWriter(
            self.own,
            created_ms=time.time_ns() // 1_000_000,
            seal_to=seal,
            selection={"collections": list(patterns)} if patterns else None,
        )
        self.stats["bundles"] += 1
        self.stats["bundle_entries"] += plan.entries

        opened = store

        async def close() -> None:
            self._streams -= 1
            await asyncio.to_thread(opened.close)

        headers = [
            ("lichen-cursor", plan.cursor.encode()),
            ("lichen-entries", str(plan.entries)),
            ("lichen-complete", "1" if plan.complete else "0"),
            ("cache-control", "no-store"),
            ("content-disposition", f'attachment; filename="{self._file_name()}"'),
        ]
        if seal is not None:
            headers.append(("lichen-sealed-to", str(NodeId(seal))))
        return Response(
            200,
            self._stream(store, plan, writer, patterns),
            content_type=BUNDLE_TYPE,
            headers=headers,
            close=close,
        )

    def _file_name(self) -> str:
        return f"{self.node.identity.node_id.short}-{time.strftime('%Y%m%dT%H%M%S')}.lcb"

    async def _stream(
        self, store: LogStore, plan: CarryPlan, writer: BundleWriter, patterns: tuple[str, ...]
    ) -> AsyncIterator[bytes]:
        yield writer.data_to_send()
        entries = rows(store, plan, patterns)
        sign = self.node.identity.sign

        def step() -> tuple[bytes, bool]:
            size = 0
            for author, seq, raw in entries:
                writer.add(author, seq, raw)
                size += len(raw)
                if size >= _STEP_BYTES:
                    return writer.data_to_send(), False
            writer.finish(sign)
            return writer.data_to_send(), True

        try:
            done = False
            while not done:
                data, done = await asyncio.to_thread(step)
                if data:
                    yield data
        finally:
            with contextlib.suppress(Exception):
                entries.close()

    # -------------------------------------------------------------- handover

    async def _handover(self, request: Request) -> Response:
        if request.body is None:
            return json_response(
                400,
                {
                    "error": "POST the entry batch the cloud gave for this "
                    "board (receipts.handover) as the body"
                },
            )
        payload = await asyncio.to_thread(request.body.read)
        try:
            screened = await asyncio.to_thread(
                screen_handover,
                payload,
                self.clouds(),
                max_payload=self.rules.max_handover,
                max_entry_size=self.rules.max_entry_size,
            )
        except BatchError as exc:
            self.stats["refused"] += 1
            return json_response(400, {"error": batch_error(exc), "stored": 0})
        if screened.refusals:
            self.stats["refused"] += 1
            first = screened.refusals[0]
            status = 403 if first.kind == "not_accepted" else 400
            return json_response(
                status,
                {
                    "error": f"refused, nothing stored: {first.reason}",
                    "refused": [r.as_json() for r in screened.refusals[:20]],
                    "stored": 0,
                },
            )
        results = await self.node.writer.receive_many(screened.entries)
        stored = sum(1 for r in results if r is InsertOutcome.STORED)
        pairs = list(zip(screened.entries, results, strict=True))
        problems = [f"{e.where}: {r}" for e, r in pairs if isinstance(r, ValueError)]
        good = [e for e, r in pairs if not isinstance(r, ValueError)]
        await self.took(good)
        self.stats["handovers"] += 1
        self.stats["handover_entries"] += stored
        acked = self.node.reader.delivery.acked()
        return json_response(
            200,
            {
                "stored": stored,
                "already_held": len(good) - stored,
                "not_stored": problems[:20],
                "acked": {str(NodeId(feed)): seq for feed, seq in sorted(acked.items())},
            },
        )
