"""The cloud role as a running node: MQTT in, sink, acknowledgements out, HTTP API.

:class:`CloudRole` wires the pieces under one asyncio supervisor::

    MqttLink ──messages──▶ queue ──groups──▶ Ingestor ──▶ Sink
       ▲                                        │
       └── PUBACK after durable storage ◀───────┤
       └── acks + beacon + commands ◀─ replies ◀┘
    HttpServer ── CloudApi ── SinkReader (one per request, in a thread)

Tasks: the broker connection (reconnects with jittered backoff), opening the
sink (retried until the database answers), the consumer, the acknowledgement
publisher and the time beacons (what goes back to boards is
:class:`~agent.cloud.replies.BoardReplies`), the status snapshot
(``HOME/run/status.json`` every 2 s, by the same :class:`~agent.node.StatusLoop`
as the agent's, so it ages, goes stale and survives a full disk alike) and the
compaction of our own ``_acks`` history (every ``compact_interval``). The log,
its writer and the "log changed" broadcast are the node's (:class:`~agent.node.Node`).
Start it from a test like ``lichen cloud`` does::

    role = CloudRole(home, config, identity)
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    ...
    stop.set(); await task
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..aio import cancel_and_wait, wait_event
from ..backoff import Backoff
from ..clock import format_ts, pack
from ..config import Config
from ..config.cloud import CloudConfig
from ..errors import LichenError
from ..extras import require_module
from ..field import FIELD_PATH
from ..home import Home
from ..http import HttpServer, Request, Response, json_response
from ..identity import Identity
from ..logs import event
from ..mesh.trust import TrustStore
from ..node import Node, StatusLoop
from ..uplink.wire import MAX_PAYLOAD, Topics
from .api import CloudApi
from .bundles import BundleIntake
from .core import IngestCore
from .fleet import cloud_fleet, load_fleet, sealed_reader
from .ingest import Ingestor, admitted_authors, make_sink
from .ingest_workers import IngestWorkers
from .mqtt import Message, MqttLink, session_settings
from .replies import BoardReplies
from .sink import SinkError

__all__ = ["CloudRole", "require_cloud_extras"]

log = logging.getLogger("lichen.cloud")

MAX_GROUP = 64  # messages stored in one sink call
FLEET_RELOAD_S = 10.0  # the fleet document others stored (a bundle import, other workers)
STOP_GRACE_S = 10.0
WORKERS_IDLE_CHECK_S = 5.0


def require_cloud_extras(*, postgres: bool = False) -> None:
    """Check that what the role will need is installed (``lichen[cloud]``, and
    ``lichen[postgres]`` for the PostgreSQL sink); :class:`~agent.extras.MissingExtra`
    names the extra otherwise."""
    cloud = "'lichen[cloud]'"
    require_module("paho.mqtt.client", install=cloud, purpose="lichen cloud", package="paho-mqtt")
    if postgres:
        require_module("psycopg", install="'lichen[postgres]'", purpose="the PostgreSQL sink")


class CloudRole:
    """A running cloud node. Build it, then ``await role.run(stop_event)``."""

    def __init__(
        self, home: Home, config: Config, identity: Identity, cloud: CloudConfig | None = None
    ) -> None:
        self.home, self.config, self.identity = home, config, identity
        self.cloud = cloud = cloud if cloud is not None else config.cloud
        require_cloud_extras(postgres=cloud.sink == "postgres")
        me = identity.node_id
        # any entry that fits a batch is taken, whatever this node's own cap
        max_size = max(config.log.max_entry_size, MAX_PAYLOAD)
        self.node = Node.for_home(home, config, identity, max_entry_size=max_size)
        self.clock, self.writer = self.node.clock, self.node.writer
        self.status_loop = StatusLoop(self.node, home.status_file, self._status_body, role="cloud")
        self.sink = make_sink(cloud, self.writer, home, max_size)
        self.trust = TrustStore(home.trust_file)
        self.fleet = cloud_fleet(cloud, home)  # a ConfigError names a mistyped id
        self.core = IngestCore(
            prefix=cloud.prefix, trusted=self.admitted(), max_entry_size=max_size, fleet=self.fleet
        )
        self.workers = IngestWorkers(
            workers=cloud.ingest_workers, backlog_bytes=cloud.ingest_backlog_bytes,
            max_entry_size=max_size,
        )  # fmt: skip
        self.ingestor = Ingestor(
            self.core, self.sink, self.writer, ack_interval=cloud.ack_interval, workers=self.workers
        )
        self.link = MqttLink(
            session_settings(cloud, cloud.default_client_id(me)),
            Topics.up_filter(cloud.prefix, cloud.group),
            self._received,
        )
        self.replies = BoardReplies(
            self.node, self.ingestor, self.link, beacon_interval=cloud.beacon_interval
        )
        from ..bundle.seal import Opener

        uploads = home.status_file.parent / "uploads"
        self.bundles = BundleIntake(
            self.ingestor, Opener(identity), uploads, for_board=self.replies.for_board
        )
        address = cloud.http_address
        self.http = (
            None
            if address is None
            else HttpServer(
                CloudApi(
                    self.sink.reader,
                    self.health,
                    self._bundle_upload,
                    readable=None if self.fleet is None else sealed_reader(self.fleet, identity),
                ),
                *address,
                token=cloud.http_token,
                timeout=cloud.http_timeout,
                max_body=cloud.max_bundle_bytes,
                spool_dir=uploads,
                server_name="lichen-cloud",
                open_paths=[FIELD_PATH],  # the web app holds no secret (docs/decisions.md)
                serves="the cloud's HTTP API",
                address_fix="[cloud] http or --http HOST:PORT (port 0 picks a free one)",
            )
        )
        self.sink_errors = 0
        self.last_sink_error: str | None = None
        self.compactions = 0
        self._safe_dsn: str | None = None
        if cloud.sink == "postgres":
            from .postgres_sink import safe_dsn

            self._safe_dsn = safe_dsn(cloud.postgres)
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._queued_bytes = 0
        self._sink_ready = asyncio.Event()
        self._busy = False
        self._stopping = False

    # ------------------------------------------------------------ ingestion

    def admitted(self) -> frozenset[bytes] | None:
        """Whose entries are stored: None (``accept = "any"``) for anyone whose
        signature verifies; else the boards in the trust store (``lichen trust
        add``, re-read when it changes), ``[cloud] authors`` and this node."""
        return admitted_authors(self.cloud, self.trust, self.identity.node_id.key)

    def _received(self, message: Message) -> None:
        if not self._stopping:  # once stopping, the broker keeps it for our session
            self._queue.put_nowait(message)
            self._queued_bytes += len(message.payload)

    async def _consume(self) -> None:
        await self._sink_ready.wait()
        while True:
            group = [await self._queue.get()]
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            self._queued_bytes -= sum(len(m.payload) for m in group)
            self._busy = True
            try:
                if await self._ingest(group):
                    for message in group:
                        self.link.ack(message)
                    self.replies.wake()
            finally:
                self._busy = False

    async def _ingest(self, group: list[Message]) -> bool:
        """Store ``group``, retrying while the sink is down. False: leave it unacked."""
        backoff = Backoff(0.5, 30.0)
        while not self._stopping:
            try:
                self.core.trusted = self.admitted()  # `lichen trust add` needs no restart
                messages = [(m.topic, m.payload) for m in group]
                await self.ingestor.ingest_many(messages, waiting_bytes=self._queued_bytes)
                return True
            except SinkError as exc:
                self.sink_errors += 1
                self.last_sink_error = str(exc)
                delay = backoff.next()
                event(log, "sink failed; retrying", logging.ERROR, error=str(exc),
                      messages=len(group), retry_in_s=round(delay, 1))  # fmt: skip
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug: do not ack; the broker redelivers later
                log.exception("ingesting %d messages failed", len(group))
                self.last_sink_error = repr(exc)
                return False
        return False

    async def _bundle_upload(self, request: Request) -> Response:
        """``POST /v1/bundles``, once the sink is open (the trust list as it is now)."""
        if not self._sink_ready.is_set() or self._stopping:
            return json_response(503, {"error": "the cloud's store is not open yet; try again"})
        self.core.trusted = self.admitted()
        return await self.bundles(request)

    # ------------------------------------------------------------ upkeep

    async def _open_sink(self, stop: asyncio.Event) -> None:
        backoff = Backoff(1.0, 60.0)
        while not stop.is_set():
            try:
                await self.sink.open()
                await self._load_fleet()
            except SinkError as exc:
                self.sink_errors += 1
                self.last_sink_error = str(exc)
                delay = backoff.next()
                event(log, "sink unavailable; retrying", logging.ERROR, sink=self.sink.name,
                      error=str(exc), retry_in_s=round(delay, 1))  # fmt: skip
                await wait_event(stop, delay)
                continue
            self._sink_ready.set()
            event(log, "sink ready", sink=self.sink.name)
            return

    async def _load_fleet(self) -> None:
        """Learn the fleet document the sink and this node's log hold."""
        if self.fleet is not None and await load_fleet(self.fleet, self.sink, self.node.reader):
            event(log, "fleet document loaded", **self.fleet.status())

    async def compact(self) -> int:
        """Prune our own feed below its head: old ``_acks`` versions go, the
        current acknowledgement of every feed stays."""
        removed = await self.writer.compact(self.identity.node_id.key)
        self.compactions += 1
        if removed:
            event(log, "compacted own acknowledgements", removed=removed)
        return removed

    async def _reload_fleet(self) -> None:
        await self._sink_ready.wait()
        await self._every(FLEET_RELOAD_S, self._load_fleet)

    async def _stop_idle_workers(self) -> None:
        if not self._busy:
            await self.workers.stop_if_idle()

    async def _beacons(self) -> None:
        await self.replies.write_beacon()
        await self._every(self.cloud.beacon_interval, self.replies.write_beacon)

    async def _every(self, seconds: float, action: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except LichenError as exc:
                event(log, "periodic task failed", logging.ERROR, error=str(exc))

    # ------------------------------------------------------------ status

    def health(self) -> dict[str, Any]:
        stats = self.ingestor.stats
        last = stats.last_ingest_ms
        return {
            "running": not self._stopping,
            "node_id": str(self.identity.node_id),
            "sink": self.sink.name,
            "sink_ready": self._sink_ready.is_set(),
            "broker": {"url": str(self.cloud.broker_url), "connected": self.link.connected},
            "entries_stored": stats.entries_stored,
            "messages": stats.messages,
            "rejected": stats.entries_rejected + stats.messages_rejected,
            "last_ingest_ms": last,
            "last_ingest": None if last is None else format_ts(pack(last)),
            "http_clients": None if self.http is None else self.http.counters(),
            "bundles": {"uploads": self.bundles.uploads, "refused": self.bundles.refused},
        }

    def status(self) -> dict[str, Any]:
        """The snapshot ``HOME/run/status.json`` holds (see :class:`StatusLoop`)."""
        return self.status_loop.snapshot()

    def _status_body(self) -> dict[str, Any]:
        link = self.link
        return {
            "cloud": {
                "sink": self.sink.name,
                "postgres": self._safe_dsn,
                "sink_ready": self._sink_ready.is_set(),
                "sink_errors": self.sink_errors,
                "last_sink_error": self.last_sink_error,
                "broker": {
                    "url": str(self.cloud.broker_url),
                    "connected": link.connected,
                    "client_id": link.settings.client_id,
                    "subscription": link.subscription,
                    "connects": link.connects,
                    "disconnects": link.disconnects,
                    "session_present": link.session_present,
                    "last_error": link.last_error,
                },
                "http": None if self.http is None else self.http.address,
                "http_clients": None if self.http is None else self.http.counters(),
                "bundles": {"uploads": self.bundles.uploads, "refused": self.bundles.refused},
                "queued": self._queue.qsize(),
                "ingest_workers": self.workers.status(),
                "acks_pending": self.ingestor.coalescer.pending,
                "compactions": self.compactions,
                "beacons_written": self.replies.beacons_written,
                "commands_open": self.replies.orders.pending,
                "fleet": None if self.fleet is None else self.fleet.status(),
                **self.ingestor.stats.as_json(),
            },
        }

    # ------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop cleanly."""
        await self.node.start()
        try:
            if self.http is not None:
                await self.http.start()  # a ServeError says why it cannot, and the fix
        except BaseException:
            await self.node.close()
            raise
        tasks = [
            asyncio.create_task(self._open_sink(stop), name="cloud-sink"),
            asyncio.create_task(self.link.run(stop), name="cloud-mqtt"),
            asyncio.create_task(self._consume(), name="cloud-consume"),
            asyncio.create_task(self.replies.run(), name="cloud-acks"),
            asyncio.create_task(self._every(self.cloud.compact_interval, self.compact)),
            asyncio.create_task(self._every(WORKERS_IDLE_CHECK_S, self._stop_idle_workers)),
        ]
        if self.cloud.beacon_interval > 0:
            tasks.append(asyncio.create_task(self._beacons(), name="cloud-beacons"))
        if self.fleet is not None:
            tasks.append(asyncio.create_task(self._reload_fleet(), name="cloud-fleet"))
        self.status_loop.start()
        nobody = self.fleet is None and len(self.admitted() or ()) <= 1
        if self.cloud.accept == "trusted" and nobody:
            event(
                log, "no board is trusted: every batch is refused until one is", logging.WARNING,
                fix=f"lichen --home {self.home.path} trust add NODE_ID (each board's lichen id)",
            )  # fmt: skip
        event(
            log,
            "cloud started",
            node=str(self.identity.node_id),
            broker=str(self.cloud.broker_url),
            subscription=self.link.subscription,
            sink=self.sink.name,
            fleet=None if self.fleet is None else self.fleet.fleet_id,
            http=None if self.http is None else self.http.address,
            home=str(self.home.path),
        )
        try:
            await stop.wait()
        finally:
            await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self._stopping = True
        deadline = time.monotonic() + STOP_GRACE_S
        while self._busy and time.monotonic() < deadline:  # let the current group finish
            await asyncio.sleep(0.02)
        await cancel_and_wait(tasks)
        await self.workers.close()
        await self.status_loop.stop()
        with contextlib.suppress(SinkError):
            await self.replies.flush(force=True)
        await self.link.close()
        if self.http is not None:
            await self.http.close()
        with contextlib.suppress(SinkError):
            await self.sink.close()
        status = self.status_loop.snapshot("stopped")
        await self.node.close()
        self.status_loop.write(status)
        stats = self.ingestor.stats
        event(log, "cloud stopped", messages=stats.messages, stored=stats.entries_stored,
              rejected=stats.entries_rejected + stats.messages_rejected)  # fmt: skip
