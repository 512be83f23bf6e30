"""The agent: sensors → batcher → single writer → log, under one asyncio supervisor.

:class:`Agent` wires the pieces of a running node together:

* one :class:`~agent.runtime.sensors.SensorRunner` thread per sensor instance;
* the :class:`~agent.batcher.ReadingBatcher`, flushed every ``log.flush_interval``
  (or at once for a collection that received an urgent reading);
* the node (:class:`~agent.node.Node`): the log's writer thread, which signs
  and group-commits, and the "log changed" broadcast the gossip and the
  uplinks listen to;
* a status snapshot (``HOME/run/status.json``, :class:`~agent.node.StatusLoop`)
  every two seconds and an info line every ten, so ``lichen status`` and
  journald show what the node does.

Under systemd (``Type=notify``, :mod:`agent.sdnotify`) the agent says
``READY=1`` once it runs, a ``STATUS=`` line with each summary, and
``STOPPING=1`` when it stops; with ``WatchdogSec=`` it sends ``WATCHDOG=1``
every half of the timeout, but only while the flush loop keeps turning (it
turns at least every quarter of the timeout): an event loop or a flush that is
stuck stops the pings, and systemd restarts the agent.

Stopping (SIGTERM/SIGINT in ``lichen run``) stops the sensors, writes what is
pending and closes the log: a clean stop loses no reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..aio import cancel_and_wait, wait_event
from ..batcher import PendingBatch, ReadingBatcher, drafts_for
from ..board import load_board
from ..clock import HybridClock, format_ts
from ..config import Config
from ..errors import ConfigError
from ..hardware import Hardware
from ..home import Home
from ..identity import Identity
from ..logs import event
from ..node import Node, StatusLoop
from ..plugins import ConfiguredPlugin, ConfiguredSensor, Links, configure_links, configure_sensor
from ..readings import SENSORS_COLLECTION, FieldSpec, Value, describe_id
from ..sdnotify import Notifier
from ..store.log_store import Draft
from .sensors import SensorRunner, latest_reading

if TYPE_CHECKING:
    from ..i2c import I2CBus
    from ..link_api import SensorReading
    from ..mesh.gossip import Gossip
    from ..mule.service import MuleService
    from .uplinks import UplinkRuntime

__all__ = ["Agent", "configure_sensors", "hardware_for"]

log = logging.getLogger("lichen.agent")

FINAL_FLUSH_S = 5.0
WATCH_INTERVAL_S = 1.0
SUMMARY_INTERVAL_S = 10.0


def hardware_for(
    config: Config,
    *,
    board: str | None = None,
    pin_factory: Any = None,
    i2c: Mapping[int, I2CBus] | None = None,
) -> Hardware:
    """The board hardware named by ``[node] board`` (or ``board``) and ``[gpio]``,
    its ``buses`` enabled; tests give a ``pin_factory`` and simulated ``i2c`` buses."""
    try:
        return Hardware(
            load_board(board or config.node.board),
            pin_factory=pin_factory,
            pin_factory_name=config.gpio.pin_factory,
            i2c=i2c,
            buses=config.gpio.buses,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), file=config.path, key="[gpio] buses") from None


def configure_sensors(config: Config, hardware: Hardware | None = None) -> list[ConfiguredSensor]:
    """Load and check every ``[[sensors.NAME]]`` instance (names and pins must not
    clash); with ``hardware``, their pins are claimed on the board."""
    sensors = [
        configure_sensor(plugin, index, table, config.path, hardware)
        for plugin, index, table in config.instances("sensors")
    ]
    seen: dict[str, str] = {}
    for s in sensors:
        if s.collection in seen:
            raise ConfigError(
                f"sensors {seen[s.collection]!r} and {s.name!r} both write {s.collection!r}",
                file=config.path,
                key=f"[[sensors.{s.plugin}]] name = {s.name!r}",
                fix="give each [[sensors.*]] instance its own name (and collection)",
            )
        seen[s.collection] = s.name
    return sensors


class Agent:
    """A running node. Build it, then ``await agent.run(stop_event)``."""

    def __init__(
        self,
        home: Home,
        config: Config,
        identity: Identity,
        sensors: Sequence[ConfiguredSensor] = (),
        *,
        clock: HybridClock | None = None,
        hardware: Hardware | None = None,
    ) -> None:
        self.home, self.config, self.identity = home, config, identity
        self.node = Node.for_home(home, config, identity, clock=clock)
        self.clock, self.writer = self.node.clock, self.node.writer
        self.hardware = hardware
        self.batcher = ReadingBatcher(max_pending=config.log.max_pending)
        self.status_loop = StatusLoop(
            self.node, home.status_file, self._status_body, after=self._summary
        )
        self.runners = [
            SensorRunner(
                s,
                clock=self.clock,
                state_dir=home.state / "sensors",
                deliver=self._deliver,
                hardware=hardware,
                home=home.path,
            )
            for s in sensors
        ]
        self._runners_by_collection = {r.configured.collection: r for r in self.runners}
        self.links: list[ConfiguredPlugin] = []
        self.static_peers: list[str] = []
        self._described: dict[str, dict[str, Any]] = {}
        self.readings_stored = 0
        self.entries_stored = 0
        self.readings_rejected = 0
        #: readings still pending when the agent stopped (the store kept failing)
        self.readings_unwritten = 0
        self.write_errors = 0
        self.last_write_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urgent = asyncio.Event()
        self._totals = (0, 0)
        self._summarised = (time.monotonic(), 0)  # when, and readings stored by then
        self.gossip: Gossip | None = None
        self.uplink: UplinkRuntime | None = None
        #: the service manager's notifications (none outside systemd)
        self.notifier = Notifier(None)
        self._beat = time.monotonic()  # the flush loop's last turn
        self._stuck_reported = False
        #: where the mule exchange is served (``[mule] http``, ``lichen run --mule-http``)
        self.mule_address = config.mule.address
        self.mule: MuleService | None = None

    @classmethod
    def from_config(
        cls, home: Home, config: Config, identity: Identity, links: Links | None = None
    ) -> Agent:
        """``links``: transports, uplinks and static peers with the command line's
        addresses applied (:func:`~agent.plugins.configure_links`); by default the
        configured ones."""
        hardware = hardware_for(config)
        agent = cls(home, config, identity, configure_sensors(config, hardware), hardware=hardware)
        # transports and uplinks: checked now, so a bad table stops the start
        links = links if links is not None else configure_links(config)
        agent.links = [*links.transports, *links.uplinks]
        agent.static_peers = list(links.peers)
        return agent

    # ------------------------------------------------------------ readings

    def _deliver(
        self,
        collection: str,
        ts_ms: int,
        values: Mapping[str, Value],
        fields: Mapping[str, FieldSpec],
        *,
        quality: str | None,
        urgent: bool,
    ) -> None:
        """Called from sensor threads."""
        if (
            self.batcher.add(collection, ts_ms, values, fields, quality=quality, urgent=urgent)
            and self._loop is not None
        ):
            self._loop.call_soon_threadsafe(self._urgent.set)

    def _description(self, batch: PendingBatch) -> Draft | None:
        """A new version of the collection's ``_sensors`` document when what we
        know about it (plugin, interval, fields: units, resolution, class) changed."""
        runner = self._runners_by_collection.get(batch.collection)
        body: dict[str, Any] = {
            "fields": {name: spec.describe() for name, spec in sorted(batch.fields.items())}
        }
        if runner is not None:
            body |= {
                "plugin": runner.configured.plugin,
                "sensor": runner.configured.name,
                "interval": runner.configured.config.interval,
            }
        if self._described.get(batch.collection) == body:
            return None
        doc_id = describe_id(batch.collection, str(self.identity.node_id))
        if self.node.started:
            current = self.node.reader.documents.get(SENSORS_COLLECTION, doc_id)
            if current is not None and current.body == body:
                self._described[batch.collection] = body
                return None
        self._described[batch.collection] = body
        return Draft(SENSORS_COLLECTION, body, doc_id)

    async def flush(self, batches: Sequence[PendingBatch] | None = None) -> int:
        """Write pending readings now; return how many readings were stored.

        Never raises for one collection's sake: a batch that cannot be encoded is
        rejected (counted and logged), and one the store failed to take (a full
        disk) is put back for the next flush."""
        if batches is None:
            batches = self.batcher.take_all()
        if not batches:
            return 0
        max_size = self.config.log.max_entry_size
        plans = []
        for batch in batches:
            try:
                drafts, too_large = drafts_for(batch, max_size)
            except (ValueError, TypeError, OverflowError) as exc:  # not storable at all
                self._reject(batch.collection, len(batch), str(exc))
                continue
            if too_large:
                self._too_large(batch.collection, too_large, max_size)
            if not drafts:
                continue
            description = self._description(batch)
            plans.append((batch, [description, *drafts] if description else drafts))
        if not plans:
            return 0
        try:
            results: list[Any] = await self.writer.append_groups([drafts for _, drafts in plans])
        except Exception as exc:  # the store failed (disk full …): the whole flush
            results = [exc] * len(plans)
        stored = 0
        for (batch, drafts), result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):  # its description was not written either
                self._described.pop(batch.collection, None)
            if isinstance(result, ValueError):  # this batch can never be written: say so
                self._reject(batch.collection, len(batch), str(result))
            elif isinstance(result, BaseException):  # the store failed: keep and retry
                self.write_errors += 1
                self.last_write_error = str(result)
                self.batcher.put_back([batch])
                event(log, "write failed; will retry", logging.ERROR, error=str(result))
            else:
                stored += len(batch)
                self.entries_stored += len(drafts)
        self.readings_stored += stored
        if stored:  # the log's growth is announced by the node's writer
            self.node.readings.publish(
                [self._latest(b) for (b, _), r in zip(plans, results, strict=True)
                 if not isinstance(r, BaseException) and len(b)]
            )  # fmt: skip
        return stored

    def _reject(self, collection: str, readings: int, error: str) -> None:
        self.readings_rejected += readings
        event(
            log,
            "readings rejected",
            logging.ERROR,
            collection=collection,
            readings=readings,
            error=error,
        )

    def _too_large(self, collection: str, readings: int, max_size: int) -> None:
        """Readings each too large for one entry: refused, on their sensor's count."""
        problem = f"one reading does not fit an entry of {max_size} bytes (log.max_entry_size)"
        runner = self._runners_by_collection.get(collection)
        if runner is None:
            self._reject(collection, readings, problem)
            return
        for _ in range(readings):
            runner.refuse(problem)

    def _latest(self, batch: PendingBatch) -> SensorReading:
        runner = self._runners_by_collection.get(batch.collection)
        return latest_reading(batch, runner.configured if runner else None)

    async def _flush_loop(self) -> None:
        interval = self.config.log.flush_interval
        watchdog_s = self.notifier.watchdog_s
        beat_every = interval if watchdog_s is None else min(interval, watchdog_s / 4)
        next_tick = time.monotonic() + interval
        while True:
            self._beat = time.monotonic()
            timeout = min(max(0.0, next_tick - time.monotonic()), beat_every)
            await wait_event(self._urgent, timeout)
            try:
                if self._urgent.is_set():
                    self._urgent.clear()
                    await self.flush(self.batcher.take_urgent())
                if time.monotonic() >= next_tick:
                    next_tick += interval * (1 + (time.monotonic() - next_tick) // interval)
                    await self.flush()
            except Exception as exc:  # never let one failure end the writing for good
                event(log, "flush failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")

    # -------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """The snapshot ``HOME/run/status.json`` holds (see :class:`StatusLoop`)."""
        return self.status_loop.snapshot()

    def _status_body(self) -> dict[str, Any]:
        if self.node.started:
            self._totals = self.node.reader.totals()
        entries, size = self._totals
        stats = self.writer.stats
        return {
            "clock": format_ts(self.clock.last) if self.clock.last else None,
            "log": {
                "entries": entries,
                "bytes": size,
                "readings_stored": self.readings_stored,
                "readings_pending": self.batcher.pending,
                "readings_dropped": self.batcher.total_dropped,
                "readings_rejected": self.readings_rejected,
                "commits": stats.commits,
                "largest_group_commit": stats.largest_batch,
                "last_commit_ms": round(stats.last_commit_ms, 3),
                "write_errors": self.write_errors,
                "last_write_error": self.last_write_error,
            },
            "sensors": [r.snapshot() for r in self.runners],
            "sync": None if self.gossip is None else self.gossip.status(),
            "uplink": None if self.uplink is None else self.uplink.status(),
            "mule": None if self.mule is None else self.mule.status(),
        }

    def _summary(self, status: dict[str, Any]) -> None:
        """Every ``SUMMARY_INTERVAL_S``, an info line: what was stored since."""
        last_summary, last_readings = self._summarised
        if time.monotonic() - last_summary < SUMMARY_INTERVAL_S:
            return
        latest = {
            s["name"]: " ".join(f"{k}={v}" for k, v in s["latest"].items())
            for s in status["sensors"]
            if s["latest"]
        }
        event(
            log,
            "stored",
            readings=self.readings_stored - last_readings,
            total_entries=status["log"]["entries"],
            **latest,
        )
        self._summarised = (time.monotonic(), self.readings_stored)
        self.notifier.status(
            f"running: {self.readings_stored - last_readings} readings stored in the last "
            f"{SUMMARY_INTERVAL_S:.0f} s, {status['log']['entries']} entries in the log"
        )

    async def _service_watchdog(self, watchdog_s: float) -> None:
        """``WATCHDOG=1`` every half of systemd's timeout while the flush loop
        turns; a loop silent for longer than the timeout is stuck (a hung disk
        write, a blocked event loop): no ping, and systemd restarts the agent."""
        while True:
            await asyncio.sleep(watchdog_s / 2)
            silent = time.monotonic() - self._beat
            if silent <= watchdog_s:
                self.notifier.watchdog()
                if self._stuck_reported:
                    event(log, "flush loop turning again; watchdog fed", silent_s=round(silent, 1))
                    self._stuck_reported = False
            elif not self._stuck_reported:
                event(log, "flush loop stuck; watchdog not fed", logging.ERROR,
                      silent_s=round(silent, 1), watchdog_s=watchdog_s)  # fmt: skip
                self._stuck_reported = True

    async def _watch_loop(self) -> None:
        """The watchdog: every second, each instance is checked for a call to its
        plugin that takes longer than its ``stuck_after``."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for runner in self.runners:
                try:
                    runner.watch()
                except Exception as exc:  # the watchdog itself must keep going
                    event(log, "watchdog failed", logging.ERROR, error=repr(exc))

    # ------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop cleanly."""
        self._loop = asyncio.get_running_loop()
        await self.node.start()
        await self._start_gossip()
        self._start_uplink()
        try:
            await self._start_mule()
        except BaseException:  # its address is taken: stop what started, say why
            if self.uplink is not None:
                await self.uplink.close()
            if self.gossip is not None:
                await self.gossip.close()
            await self.node.close()
            raise
        event(
            log,
            "started",
            node=str(self.identity.node_id),
            name=self.config.node.name,
            sensors=len(self.runners),
            home=str(self.home.path),
        )
        for runner in self.runners:
            runner.start()
        self.status_loop.start()
        self._beat = time.monotonic()
        tasks = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._watch_loop(), name="watchdog"),
        ]
        if self.notifier.watchdog_s is not None:
            tasks.append(
                asyncio.create_task(
                    self._service_watchdog(self.notifier.watchdog_s), name="service watchdog"
                )
            )
        self.notifier.ready(f"running: {len(self.runners)} sensors")
        try:
            await stop.wait()
        finally:
            self.notifier.stopping("stopping: writing what is pending")
            await self._shutdown(tasks)

    async def _final_flush(self) -> None:
        """Write everything pending; while the store fails (a full disk), retry for
        up to ``FINAL_FLUSH_S``. What is still pending then is counted and logged."""
        deadline = time.monotonic() + FINAL_FLUSH_S
        while True:
            try:
                await self.flush()
            except Exception as exc:
                event(log, "flush failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            if not self.batcher.pending or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        self.readings_unwritten = self.batcher.pending
        if self.readings_unwritten:
            event(
                log,
                "readings not written at stop",
                logging.ERROR,
                readings=self.readings_unwritten,
                error=self.last_write_error,
            )

    async def _start_gossip(self) -> None:
        """Run the configured transports, if any, under the gossip runtime."""
        links = [link for link in self.links if link.group == "transports"]
        if links:
            from ..mesh.gossip import gossip_for

            self.gossip = gossip_for(
                self.home, self.config, self.node, links, static_peers=self.static_peers
            )
            await self.gossip.start()

    def _start_uplink(self) -> None:
        """Uplinks, acknowledgements and retention (which runs with no uplink too)."""
        from .uplinks import UplinkRuntime

        self.uplink = UplinkRuntime(
            self.config,
            self.node,
            [link for link in self.links if link.group == "uplinks"],
            state_dir=self.home.state,
        )
        self.uplink.start()

    async def _start_mule(self) -> None:
        """The mule exchange, if an address is given (docs/field.md)."""
        uplink = self.uplink
        if self.mule_address is None or uplink is None:
            return
        from ..identity import NodeId
        from ..mule.service import MuleService

        ledger = uplink.ledger
        ack_from = self.config.retention.ack_from
        named = [NodeId.parse(t).key for t in ack_from] if isinstance(ack_from, list) else []
        self.mule = MuleService(
            self.config,
            self.node,
            self.mule_address,
            clouds=lambda: ledger.trusted,
            cloud_order=lambda: [*named, *sorted(ledger.pinned)],
            apply_acks=uplink.apply_acks,
        )
        await self.mule.start()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        hung = [
            r.configured.name
            for r, ok in zip(
                self.runners,
                await asyncio.gather(*(loop.run_in_executor(None, r.stop) for r in self.runners)),
                strict=True,
            )
            if not ok
        ]
        if hung:
            event(log, "sensors did not stop in time", logging.WARNING, sensors=",".join(hung))
        elif self.hardware is not None:
            self.hardware.close()  # the I²C buses; none of their users is left
        await cancel_and_wait(tasks)
        await self.status_loop.stop()
        await self._final_flush()
        if self.mule is not None:
            await self.mule.close()
        if self.uplink is not None:
            await self.uplink.close()
        if self.gossip is not None:
            await self.gossip.close()
        status = self.status_loop.snapshot("stopped")
        await self.node.close()
        self.status_loop.write(status)
        event(log, "stopped", readings=self.readings_stored, entries=status["log"]["entries"])
