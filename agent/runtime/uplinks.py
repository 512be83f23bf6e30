"""The uplink runtime: runs uplink plugins, takes acknowledgements, keeps retention.

:class:`UplinkRuntime` is built by the agent whether or not an uplink is
configured (retention and the disk quota matter most when there is no cloud).
It gives each ``[[uplinks.NAME]]`` instance an :class:`UplinkPluginContext`
(the public :class:`~agent.link_api.UplinkContext`), restarts an instance that
fails with jittered backoff, wakes the outbox passes whenever the node's log
grows (:attr:`agent.node.Node.changed`), hands the latest readings
(:attr:`agent.node.Node.readings`) to the instances that ask for them,
applies acknowledgements as soon as they are stored (by an uplink or by
gossip), and runs a retention pass every
``[retention] interval`` seconds. It is the asyncio shell over :mod:`agent.uplink`
(outbox passes, the acknowledgement ledger, retention), which holds no task
and imports neither the configuration nor the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..backoff import Backoff
from ..config import Config
from ..entry import Entry, decode_entry
from ..errors import LichenError
from ..link_api import SensorReading, Uplink
from ..logs import event
from ..uplink.acks import Ack, AckLedger, ack_of
from ..uplink.backlog import backlog_status, drop_totals
from ..uplink.config import FIRST_SEEN
from ..uplink.outbox import OutboxPass
from ..uplink.retention import RetentionPass, RetentionReport, free_disk_bytes

if TYPE_CHECKING:
    from ..node import LogChange, Node
    from ..plugins import ConfiguredPlugin

__all__ = ["SWITCH_INTERVAL_S", "UplinkPluginContext", "UplinkRuntime"]

log = logging.getLogger("lichen.uplink")
#: the interpreter's GIL switch interval while uplinks run (Python's default: 5 ms)
SWITCH_INTERVAL_S = 0.001
_ACK_POLL_S = 1.0
_BACKLOG_EVERY_S = 1.5  # the status snapshot is written every 2 s


class UplinkPluginContext:
    """What one uplink instance gets (implements :class:`~agent.link_api.UplinkContext`)."""

    def __init__(self, runtime: UplinkRuntime, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.log = logging.getLogger(f"lichen.uplink.{name}")
        self.connected = False
        self.detail: str | None = None
        self.changed_at_ms: int | None = None
        self.passes = 0
        self.current: OutboxPass | None = None

    @property
    def node_id(self) -> str:
        return str(self.runtime.writer.identity.node_id)

    @property
    def node_name(self) -> str:
        return self.runtime.config.node.name

    async def outbox(self, max_bytes: int) -> AsyncIterator[Sequence[bytes]]:
        rt = self.runtime
        current = OutboxPass(rt.reader, rt.config.uplink, lambda: rt.ledger.trusted)
        self.current, self.passes = current, self.passes + 1
        rt.passes.add(current)
        try:
            while True:
                batch = current.next_batch(max_bytes)
                if batch:
                    yield batch
                    continue
                rt.wake.clear()
                await wait_event(rt.wake, 1.0)
        finally:
            rt.passes.discard(current)

    async def receive(self, entries: Sequence[bytes]) -> int:
        return await self.runtime.receive(entries, via_uplink=self.name)

    async def readings(self) -> AsyncIterator[SensorReading]:
        latest: dict[str, SensorReading] = {}
        ready = asyncio.Event()
        self.runtime.subscribers.append((latest, ready))
        try:
            while True:
                await ready.wait()
                ready.clear()
                pending = list(latest.values())
                latest.clear()
                for reading in pending:
                    yield reading
        finally:
            self.runtime.subscribers.remove((latest, ready))

    def set_connected(self, connected: bool, detail: str | None = None) -> None:
        if connected != self.connected or detail != self.detail:
            self.changed_at_ms = time.time_ns() // 1_000_000
        self.connected, self.detail = connected, detail


class UplinkRuntime:
    """Uplink instances, acknowledgements and retention of one running node."""

    def __init__(
        self,
        config: Config,
        node: Node,
        links: Sequence[ConfiguredPlugin],
        *,
        state_dir: Path,
    ) -> None:
        """``node`` is started (its reader open)."""
        self.config, self.node = config, node
        self.writer, self.reader = node.writer, node.reader
        self.ledger = AckLedger(
            self.reader, config.retention.ack_from, state_dir / "clouds", node.identity.node_id.key
        )
        self.database = node.database
        self.links = list(links)
        self.contexts = [UplinkPluginContext(self, link.name) for link in self.links]
        self.passes: set[OutboxPass] = set()
        self.wake = asyncio.Event()
        self.subscribers: list[tuple[dict[str, SensorReading], asyncio.Event]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.restarts: dict[str, int] = {link.name: 0 for link in self.links}
        self.errors: dict[str, str | None] = {link.name: None for link in self.links}
        self.pruned = 0
        self.retention_passes = 0
        self._reconciled = False
        self._backlog: dict[str, Any] = {}
        self._drops: dict[str, Any] = {}
        self._backlog_due = 0.0
        self._subscriptions: list[Callable[[], None]] = []
        self._switch_interval: float | None = None  # the interval before start(), to restore

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.links:
            # The loop reads outbox batches (Python holding the GIL) while the MQTT
            # client's network thread waits for it to take each PUBACK: handing the
            # GIL over every 1 ms instead of every 5 keeps the window moving. It is
            # process-wide: close() puts back what it was.
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        if self.links and self.ledger.mode == "none":
            event(
                log, "no cloud's acknowledgements are accepted: what this node uploads is "
                "never taken as received, so it is sent again and never pruned", logging.WARNING,
                uplinks=",".join(link.name for link in self.links),
                fix='[retention] ack_from = ["lc1…"] in lichen.toml, with the node id the cloud '
                "prints (lichen --home CLOUD_HOME id)",
            )  # fmt: skip
        elif self.links and self.ledger.mode == FIRST_SEEN and not self.ledger.pinned:
            event(
                log, "the first cloud to acknowledge over the uplink will be trusted "
                '([retention] ack_from = "first-seen")', logging.WARNING,
                fix='[retention] ack_from = ["lc1…"] names the cloud instead',
            )  # fmt: skip
        self._subscriptions = [
            self.node.changed.subscribe(self._log_changed),
            self.node.readings.subscribe(self._readings_stored),
        ]
        self.tasks.append(asyncio.create_task(self._ack_loop(), name="uplink-acks"))
        self.tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
        for link, context in zip(self.links, self.contexts, strict=True):
            self.tasks.append(
                asyncio.create_task(self._supervise(link, context), name=f"uplink-{link.name}")
            )

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every uplink (each may say goodbye to its broker) and the loops."""
        for unsubscribe in self._subscriptions:
            unsubscribe()
        self._subscriptions.clear()
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
        if not self.tasks:
            return
        for task in self.tasks:
            task.cancel()
        _done, hung = await asyncio.wait(self.tasks, timeout=timeout)
        for task in hung:
            where = _awaiting(task)
            event(log, "an uplink did not stop in time", logging.WARNING,
                  task=task.get_name(), where=where)  # fmt: skip
        self.tasks.clear()

    async def _supervise(self, link: ConfiguredPlugin, context: UplinkPluginContext) -> None:
        backoff = Backoff(first=1.0, limit=120.0)
        while True:
            started = time.monotonic()
            try:  # a constructor that fails is reported and retried like run()
                uplink: Uplink = link.cls(link.config, context)
                await uplink.run()
                raise LichenError("run() returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # stopping: the plugin ate it
                self.restarts[link.name] += 1
                self.errors[link.name] = f"{type(exc).__name__}: {exc}"
                context.set_connected(False, self.errors[link.name])
                if time.monotonic() - started > 60:
                    backoff.reset()
                delay = backoff.next()
                event(
                    log, "uplink failed; restarting", logging.ERROR,
                    uplink=link.name, error=self.errors[link.name], retry_in=round(delay, 1),
                )  # fmt: skip
                await asyncio.sleep(delay)

    # ------------------------------------------------------ acknowledgements

    async def receive(self, raws: Sequence[bytes], *, via_uplink: str | None = None) -> int:
        """Verify and store what came on an uplink's ack topic — only ``_acks``
        entries of accepted clouds (the rest is counted and logged) — and apply
        the acknowledgements now."""
        entries: list[Entry] = []
        invalid = 0
        for raw in raws:
            try:
                entries.append(decode_entry(bytes(raw), max_size=self.config.log.max_entry_size))
            except ValueError as exc:
                invalid += 1
                event(log, "entry from the ack topic refused", logging.WARNING, error=str(exc))
        screened = self.ledger.screen(entries)
        entries = screened.accepted
        if screened.strangers:
            event(
                log, "refused entries from the ack topic", logging.WARNING, uplink=via_uplink,
                **dict(sorted(screened.refused.items())),
                authors=",".join(str(_node(a)) for a in screened.strangers[:3]),
                fix='only _acks entries of the clouds in [retention] ack_from are stored',
            )  # fmt: skip
        results = await self.writer.receive_many(entries) if entries else []
        good = [e for e, r in zip(entries, results, strict=True) if not isinstance(r, ValueError)]
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, ValueError):
                invalid += 1
                event(
                    log, "entry from the ack topic refused", logging.WARNING,
                    entry=entry.where, error=str(result),
                )  # fmt: skip
        self.ledger.count_invalid(invalid)
        # a duplicate (the cloud resending its current acknowledgement) counts as well
        await self.apply_acks([a for a in map(ack_of, good) if a is not None])
        return len(good)

    async def apply_acks(self, received: Sequence[Ack] = ()) -> None:
        """Record acknowledgements stored since the last call (any path), and
        ``received`` ones."""
        await self._reconcile()
        acks = [*received, *self.ledger.new_acks()]
        if not acks:
            return
        now = time.time_ns() // 1_000_000
        ledger = self.ledger
        advanced = ledger.recorded(await self.writer.execute(ledger.recording(acks, now)))
        if advanced:
            ledger.last_ack, ledger.last_ack_ms = advanced[-1], now
            acked = {a.feed: a.seq for a in advanced}
            for current in self.passes:
                current.note_acks(acked)
            self.wake.set()

    async def _reconcile(self) -> None:
        """Once, before acknowledgements are read or retention runs: forget what
        clouds no longer trusted acknowledged (see :meth:`AckLedger.reconciling`)."""
        if self._reconciled:
            return
        ledger = self.ledger
        ledger.forgot(await self.writer.execute(ledger.reconciling()))
        self._reconciled = True
        ledger.rescan()

    async def _ack_loop(self) -> None:
        while True:
            await asyncio.sleep(_ACK_POLL_S)
            try:
                await self.apply_acks()
            except LichenError as exc:
                event(log, "reading acknowledgements failed", logging.ERROR, error=str(exc))

    # -------------------------------------------------------------- readings

    def _log_changed(self, _change: LogChange) -> None:
        """The log grew (any writer): the outbox passes look again."""
        self.wake.set()

    def _readings_stored(self, readings: Sequence[SensorReading]) -> None:
        """The agent stored readings: the latest per collection, for ``readings()``."""
        for latest, ready in self.subscribers:
            for reading in readings:
                latest[reading.collection] = reading
            if readings:
                ready.set()

    # ------------------------------------------------------------- retention

    async def retention_now(self) -> RetentionReport:
        await self._reconcile()
        writer, directory = self.writer, self.database.parent
        report = await writer.execute(
            RetentionPass(
                writer.identity, writer.clock, self.config.retention, self.config.uplink,
                self.ledger.trusted, lambda: free_disk_bytes(directory),
            )
        )  # fmt: skip
        self.pruned += report.pruned
        self.retention_passes += 1
        if report.dropped_entries:
            self._backlog_due = 0.0  # status shows the drop at once
            event(
                log, "disk quota: dropped entries", logging.WARNING,
                entries=report.dropped_entries, bytes=report.dropped_bytes,
                collections=",".join(f"{k}:{v}" for k, v in report.dropped_collections.items()),
            )  # fmt: skip
        if report.pruned:
            event(log, "pruned acknowledged entries", entries=report.pruned)
        return report

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.retention.interval)
            try:
                await self.retention_now()
            except LichenError as exc:
                event(log, "retention pass failed", logging.ERROR, error=str(exc))

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        if time.monotonic() >= self._backlog_due or not self._backlog:
            started = time.monotonic()
            self._backlog = backlog_status(self.reader, self.ledger.trusted)
            self._drops = drop_totals(self.reader, self.writer.identity.node_id.key)
            # a large backlog is costly to count: then count it less often (≤ 5 % of a core)
            spent = time.monotonic() - started
            self._backlog_due = started + max(_BACKLOG_EVERY_S, 20 * spent)
        last = self.ledger.last_ack
        return {
            "uplinks": [
                {
                    "name": c.name,
                    "connected": c.connected,
                    "detail": c.detail,
                    "since_ms": c.changed_at_ms,
                    "restarts": self.restarts[c.name],
                    "error": self.errors[c.name],
                    "sent_entries": c.current.stats.entries if c.current else 0,
                    "resent_entries": c.current.stats.resent if c.current else 0,
                }
                for c in self.contexts
            ],
            "connected": any(c.connected for c in self.contexts),
            "backlog": self._backlog,
            "last_ack": None
            if last is None
            else {"feed": str(_node(last.feed)), "seq": last.seq, "at_ms": self.ledger.last_ack_ms},
            "clouds": sorted(str(_node(k)) for k in self.ledger.trusted),
            "ack_from": self.ledger.mode,
            "refused": dict(self.ledger.refused),
            "pruned_entries": self.pruned,
            "retention_passes": self.retention_passes,
            "dropped": self._drops,
        }


def _node(key: bytes) -> Any:
    from ..identity import NodeId

    return NodeId(key)


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its chain of awaited coroutines, outermost first."""
    out: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(out) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " > ".join(out)
