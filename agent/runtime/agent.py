"""The agent: sensors → batcher → single writer → log, under one asyncio supervisor.

:class:`Agent` wires the pieces of a running node together:

* one :class:`~agent.runtime.sensors.SensorRunner` thread per sensor instance;
* the :class:`~agent.batcher.ReadingBatcher`, flushed every ``log.flush_interval``
  (or at once for a collection that received an urgent reading) by the
  :class:`~agent.runtime.writing.ReadingWriter`;
* the node (:class:`~agent.node.Node`): the log's writer thread, which signs
  and group-commits, and the "log changed" broadcast the gossip and the
  uplinks listen to;
* a status snapshot (``HOME/run/status.json``, :class:`~agent.node.StatusLoop`)
  every two seconds and an info line every ten, so ``lichen status`` and
  journald show what the node does;
* with ``[http] listen``, the dashboard (:class:`~agent.web.Dashboard`) from it.

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
from ..batcher import ReadingBatcher
from ..clock import HybridClock, format_ts
from ..config import Config
from ..hardware import Hardware
from ..home import Home
from ..identity import Identity
from ..logs import event
from ..node import Node, StatusLoop
from ..plugins import ConfiguredPlugin, ConfiguredSensor, Links, configure_links
from ..sdnotify import Notifier, feed_watchdog
from .configure import configure_sensors, hardware_for
from .overrides import FILE_NAME as OVERRIDES_FILE
from .overrides import Overrides, change_settings
from .sensors import SensorRunner, watch_sensors
from .timekeeper import timekeeper_for
from .writing import ReadingWriter

if TYPE_CHECKING:
    from ..mesh.gossip import Gossip
    from ..mule.service import MuleService
    from ..web import Dashboard
    from .from_cloud import FromCloud
    from .uplinks import UplinkRuntime

__all__ = ["Agent"]

log = logging.getLogger("lichen.agent")

SUMMARY_INTERVAL_S = 10.0


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
        self.timekeeper = timekeeper_for(home, config, hardware)
        if clock is None:  # the system clock, corrected by the clouds' beacons
            clock = HybridClock(self.timekeeper.wall)
        self.node = Node.for_home(home, config, identity, clock=clock)
        self.clock, self.writer = self.node.clock, self.node.writer
        self.hardware = hardware
        self.batcher = ReadingBatcher(max_pending=config.log.max_pending, on_urgent=self._wake)
        self.status_loop = StatusLoop(
            self.node, home.status_file, self._status_body, after=self._summary
        )
        self.runners = [
            SensorRunner(
                s,
                clock=self.clock,
                state_dir=home.state / "sensors",
                batcher=self.batcher,
                hardware=hardware,
                home=home.path,
            )
            for s in sensors
        ]
        #: what turns the batched readings into entries, and counts them
        self.readings = ReadingWriter(
            self.node, self.batcher, self.runners, config.log, node_name=config.node.name
        )
        self.links: list[ConfiguredPlugin] = []
        self.static_peers: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urgent = asyncio.Event()
        self._totals = (0, 0)
        self._summarised = (time.monotonic(), 0)  # when, and readings stored by then
        self.gossip: Gossip | None = None
        self.uplink: UplinkRuntime | None = None
        #: the service manager's notifications (none outside systemd)
        self.notifier = Notifier(None)
        self._beat = time.monotonic()  # the flush loop's last turn
        #: where the mule exchange is served (``[mule] http``, ``lichen run --mule-http``)
        self.mule_address = config.mule.address
        self.mule: MuleService | None = None
        self.from_cloud: FromCloud | None = None
        self.dashboard: Dashboard | None = None
        if config.http.address is not None:  # checked now: a missing token stops the start
            from ..web import Dashboard

            book = lambda: None if self.gossip is None else self.gossip.book  # noqa: E731
            self.dashboard = Dashboard(home, config, self.node, self.status_loop, book=book)
        self.overrides = Overrides(home.path / OVERRIDES_FILE)

    @classmethod
    def from_config(
        cls, home: Home, config: Config, identity: Identity, links: Links | None = None
    ) -> Agent:
        """``links``: transports, uplinks and static peers with the command line's
        addresses applied (:func:`~agent.plugins.configure_links`); by default the
        configured ones."""
        config = Overrides(home.path / OVERRIDES_FILE).apply(config)  # what commands set
        hardware = hardware_for(config)
        agent = cls(home, config, identity, configure_sensors(config, hardware), hardware=hardware)
        # transports and uplinks: checked now, so a bad table stops the start
        links = links if links is not None else configure_links(config)
        agent.links = [*links.transports, *links.uplinks]
        agent.static_peers = list(links.peers)
        return agent

    # ------------------------------------------------------------ readings

    def _wake(self) -> None:
        """An urgent reading was batched (on a sensor thread): flush now."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._urgent.set)

    async def _flush_loop(self) -> None:
        next_tick = time.monotonic() + self.config.log.flush_interval
        while True:
            interval = self.config.log.flush_interval  # a command may change it
            watchdog_s = self.notifier.watchdog_s
            beat_every = interval if watchdog_s is None else min(interval, watchdog_s / 4)
            next_tick = min(next_tick, time.monotonic() + interval)
            self._beat = time.monotonic()
            timeout = min(max(0.0, next_tick - time.monotonic()), beat_every)
            await wait_event(self._urgent, timeout)
            try:
                if self._urgent.is_set():
                    self._urgent.clear()
                    await self.readings.flush(self.batcher.take_urgent())
                if time.monotonic() >= next_tick:
                    next_tick += interval * (1 + (time.monotonic() - next_tick) // interval)
                    await self.readings.flush()
            except Exception as exc:  # never let one failure end the writing for good
                event(log, "flush failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")

    def apply_settings(self, changes: Mapping[str, Any]) -> None:
        """Change settings while running (a command from the cloud): see
        :func:`~agent.runtime.overrides.change_settings`."""
        self.config = change_settings(self.config, self.runners, self.overrides, changes)

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
                "readings_stored": self.readings.stored,
                "readings_pending": self.batcher.pending,
                "readings_dropped": self.batcher.total_dropped,
                "readings_rejected": self.readings.rejected,
                "commits": stats.commits,
                "largest_group_commit": stats.largest_batch,
                "last_commit_ms": round(stats.last_commit_ms, 3),
                "write_errors": self.readings.write_errors,
                "last_write_error": self.readings.last_write_error,
            },
            "sensors": [r.snapshot() for r in self.runners],
            "sync": None if self.gossip is None else self.gossip.status(),
            "uplink": None if self.uplink is None else self.uplink.status(),
            "mule": None if self.mule is None else self.mule.status(),
            "time": self.timekeeper.status(),
            "http": None if self.dashboard is None else self.dashboard.status(),
            "commands": None if self.from_cloud is None else self.from_cloud.status(),
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
            readings=self.readings.stored - last_readings,
            total_entries=status["log"]["entries"],
            **latest,
        )
        self._summarised = (time.monotonic(), self.readings.stored)
        self.notifier.status(
            f"running: {self.readings.stored - last_readings} readings stored in the last "
            f"{SUMMARY_INTERVAL_S:.0f} s, {status['log']['entries']} entries in the log"
        )

    # ------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop cleanly."""
        self._loop = asyncio.get_running_loop()
        await self.node.start()
        self._seal_writes()
        await self._start_gossip()
        self._start_uplink()
        try:
            await self._start_mule()
            if self.dashboard is not None:
                await self.dashboard.start()
        except BaseException:  # an address is taken: stop what started, say why
            await self._close_links()
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
            asyncio.create_task(watch_sensors(self.runners), name="watchdog"),
        ]
        if self.notifier.watchdog_s is not None:
            fed = feed_watchdog(self.notifier, lambda: self._beat, log)
            tasks.append(asyncio.create_task(fed, name="service watchdog"))
        self.notifier.ready(f"running: {len(self.runners)} sensors")
        try:
            await stop.wait()
        finally:
            self.notifier.stopping("stopping: writing what is pending")
            await self._shutdown(tasks)

    def _seal_writes(self) -> None:
        """On a node in a fleet, what is written to a sealed collection is sealed."""
        if not self.home.fleet_file.exists():
            return  # in no fleet: nothing to seal, and the fleet package stays unloaded
        from ..fleet import fleet_sealing

        self.writer.seal = fleet_sealing(self.home.fleet_file, self.node.reader, self.identity)

    async def _start_gossip(self) -> None:
        """Run the configured transports, if any, under the gossip runtime."""
        links = [link for link in self.links if link.group == "transports"]
        if links:
            from ..mesh.build import gossip_for

            self.gossip = gossip_for(
                self.home, self.config, self.node, links, static_peers=self.static_peers
            )
            await self.gossip.start()

    def _start_uplink(self) -> None:
        """Uplinks, acknowledgements and retention (which runs with no uplink too),
        and the clouds' beacons, taken from the clouds the uplink accepts."""
        from .from_cloud import FromCloud
        from .uplinks import UplinkRuntime

        self.uplink = UplinkRuntime(
            self.config,
            self.node,
            [link for link in self.links if link.group == "uplinks"],
            state_dir=self.home.state,
        )
        self.uplink.start()
        ledger = self.uplink.ledger
        self.from_cloud = FromCloud(
            self.node, self.timekeeper, lambda: ledger.trusted, self.apply_settings
        )
        self.from_cloud.start()

    async def _start_mule(self) -> None:
        """The mule exchange, if an address is given or ``[mule] ble`` serves it
        on the BLE transports' links (docs/field.md)."""
        uplink = self.uplink
        on_ble = self.config.mule.ble
        if (self.mule_address is None and not on_ble) or uplink is None:
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
        if on_ble and self.gossip is not None:
            from ..mesh.links import GossipContext

            for link in self.gossip.links:
                if isinstance(link.context, GossipContext):
                    link.context.mule = self.mule.server

    async def _close_links(self) -> None:
        """Stop whichever started of the mule exchange, the reader of the clouds'
        feed, the uplinks and the gossip (the last started first)."""
        if self.mule is not None:
            await self.mule.close()
        if self.from_cloud is not None:
            await self.from_cloud.close()
        if self.uplink is not None:
            await self.uplink.close()
        if self.gossip is not None:
            await self.gossip.close()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        if self.dashboard is not None:
            await self.dashboard.close()
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
        await self.readings.final_flush()
        await self._close_links()
        status = self.status_loop.snapshot("stopped")
        await self.node.close()
        self.status_loop.write(status)
        event(log, "stopped", readings=self.readings.stored, entries=status["log"]["entries"])
