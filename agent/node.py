"""The services around one node's log: its writer, its reader, what they announce.

A running node — the agent (``lichen run``), the cloud role (``lichen cloud``)
or one ``lichen sync`` — is a log at a path, an identity that signs into it
and a clock, with one :class:`~agent.store.writer.LogWriter` for every write.
:class:`Node` holds them together, with the broadcasts its services listen to
instead of calling one another:

* :attr:`Node.changed` — a :class:`~agent.store.writer.LogChange` after every
  committed transaction that stored entries, whatever wrote them: the node's
  own readings, a sync session storing what a peer sent, an uplink storing a
  cloud's acknowledgements, a cloud storing a board's batch. The gossip pokes
  its live sessions with it, the uplinks wake their outbox passes, the status
  snapshot counts it. Each subscriber hears of each commit once, on the event
  loop, before the writers that took part in it resume.
* :attr:`Node.readings` — the latest reading of each collection a flush
  stored, for uplinks that publish states (Home Assistant).

A broadcast is bounded by construction: a subscriber is a callback (one that
only sets an :class:`asyncio.Event` coalesces), never a queue.

:class:`StatusLoop` writes ``HOME/run/status.json`` every
:data:`~agent.status.STATUS_INTERVAL_S` for the agent and the cloud role
alike, through :func:`~agent.status.write_status` (in place on a full disk)::

    node = Node.for_home(home, config, identity)
    await node.start()
    status = StatusLoop(node, home.status_file, lambda: {"log": {...}})
    status.start()
    ...
    await status.stop()
    final = status.snapshot("stopped")
    await node.close()
    status.write(final)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .clock import HybridClock
from .entry import DEFAULT_MAX_ENTRY_SIZE
from .errors import StoreError
from .logs import event
from .status import STATUS_INTERVAL_S, write_status
from .store.log_store import LogStore
from .store.writer import LogChange, LogWriter

if TYPE_CHECKING:
    from .config import Config
    from .home import Home
    from .identity import Identity
    from .link_api import SensorReading

__all__ = ["Broadcast", "LogChange", "Node", "StatusLoop"]

log = logging.getLogger("lichen.node")

T = TypeVar("T")


class Broadcast(Generic[T]):
    """Callbacks told of each value published, in the order they subscribed.

    Publishing runs on the event loop; a subscriber that raises is logged and
    the others are still told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Callable[[T], None]] = []

    def subscribe(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback(value)`` for every value published from now on; returns
        the function that ends the subscription."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, value: T) -> None:
        for callback in list(self._subscribers):
            try:
                callback(value)
            except Exception as exc:  # one subscriber's bug is not the others'
                event(log, "subscriber failed", logging.ERROR, broadcast=self.name,
                      error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def __len__(self) -> int:
        return len(self._subscribers)


class Node:
    """One node's log: where it is, who signs, the clock, the writer and a reader.

    Build it, ``await node.start()`` (the writer's thread and the reader open),
    and ``await node.close()`` at the end (or ``async with node``)."""

    def __init__(
        self,
        database: Path,
        identity: Identity,
        *,
        clock: HybridClock | None = None,
        durability: str = "normal",
        max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE,
    ) -> None:
        self.database, self.identity = database, identity
        self.clock = clock or HybridClock()
        self.durability, self.max_entry_size = durability, max_entry_size
        self.changed: Broadcast[LogChange] = Broadcast("log changed")
        self.readings: Broadcast[Sequence[SensorReading]] = Broadcast("readings")
        self.writer = LogWriter(self.open_store, identity, self.clock, on_commit=self._committed)
        self.started_ms = time.time_ns() // 1_000_000
        self._reader: LogStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_home(
        cls,
        home: Home,
        config: Config,
        identity: Identity,
        *,
        clock: HybridClock | None = None,
        max_entry_size: int | None = None,
    ) -> Node:
        """The node of ``home`` with its ``[log]`` settings (``max_entry_size``:
        a larger cap than ``log.max_entry_size``, as the cloud takes)."""
        return cls(
            home.database,
            identity,
            clock=clock,
            durability=config.log.durability,
            max_entry_size=max_entry_size or config.log.max_entry_size,
        )

    def open_store(self) -> LogStore:
        """A new connection to the log, with the node's settings (one per thread)."""
        return LogStore(
            self.database, durability=self.durability, max_entry_size=self.max_entry_size
        )

    @property
    def started(self) -> bool:
        return self._reader is not None

    @property
    def reader(self) -> LogStore:
        """The event loop's read connection (open between start and close)."""
        if self._reader is None:
            raise StoreError("the node is not started: no read connection")
        return self._reader

    async def start(self) -> None:
        """Start the writer (raises the store's error, e.g. a log that cannot be
        opened), open the reader, and keep the clock ahead of our own head."""
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self.writer.start)
        try:
            self._reader = self.open_store()
        except BaseException:
            await self.writer.close()
            raise
        head = self._reader.head(self.identity.node_id.key)
        if head is not None:
            self.clock.observe(head.ts)

    async def close(self) -> None:
        """Finish every queued write, stop the writer, close the reader."""
        await self.writer.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _committed(self, change: LogChange) -> None:
        """In the writer's thread: publish on the node's loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(self.changed.publish, change)


class StatusLoop:
    """The node's status snapshot, ``HOME/run/status.json``, every
    ``STATUS_INTERVAL_S``: the fields every node has (``pid``, ``state``,
    ``node_id``, ``updated_at_ms``, ``interval_s`` — from which ``lichen status``
    tells its age — and ``log_changes``, counted from :attr:`Node.changed`)
    around what ``body()`` returns. A failed write is logged once (and its end),
    never raised: the loop keeps trying, so the snapshot resumes as soon as it
    can; on a full disk :func:`~agent.status.write_status` writes it in place.
    ``after(status)`` runs after each periodic write (the agent's summary line).

    :attr:`latest` is the last snapshot made for a write, and :attr:`snapshots`
    publishes each periodic one: readers that want the status now (the
    dashboard, ``/metrics``) take it from there instead of computing it again.
    """

    def __init__(
        self,
        node: Node,
        path: Path,
        body: Callable[[], dict[str, Any]],
        *,
        role: str | None = None,
        after: Callable[[dict[str, Any]], None] | None = None,
        interval: float = STATUS_INTERVAL_S,
    ) -> None:
        self.node, self.path, self.body = node, path, body
        self.role, self.after, self.interval = role, after, interval
        self.commits = 0
        self.entries = 0
        self.changed_at_ms: int | None = None
        self.failing = False
        self.latest: dict[str, Any] | None = None
        self.snapshots: Broadcast[dict[str, Any]] = Broadcast("status")
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def _changed(self, change: LogChange) -> None:
        self.commits += 1
        self.entries += change.entries
        self.changed_at_ms = time.time_ns() // 1_000_000

    def snapshot(self, state: str = "running") -> dict[str, Any]:
        node = self.node
        head: dict[str, Any] = {"pid": os.getpid(), "state": state}
        if self.role is not None:
            head["role"] = self.role
        return head | {
            "node_id": str(node.identity.node_id),
            "started_at_ms": node.started_ms,
            "updated_at_ms": time.time_ns() // 1_000_000,
            "interval_s": self.interval,
            "log_changes": {
                "commits": self.commits,
                "entries": self.entries,
                "at_ms": self.changed_at_ms,
            },
            **self.body(),
        }

    def write(self, status: dict[str, Any]) -> bool:
        """Write ``status``; False (logged once) if it could not be written."""
        self.latest = status
        try:
            write_status(self.path, status)
        except OSError as exc:
            if not self.failing:
                event(log, "status not written; will retry", logging.ERROR, error=str(exc))
            self.failing = True
            return False
        if self.failing:
            event(log, "status written again")
            self.failing = False
        return True

    def start(self) -> None:
        """Count the log's changes, write a first snapshot, then one every interval."""
        if self._unsubscribe is None:
            self._unsubscribe = self.node.changed.subscribe(self._changed)
        self.write(self.snapshot())
        self._task = asyncio.create_task(self._run(), name="status")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                status = self.snapshot()
            except Exception as exc:  # a read of the log failed: try again next time
                event(log, "status failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                continue
            self.write(status)
            self.snapshots.publish(status)
            if self.after is not None:
                try:
                    self.after(status)
                except Exception as exc:
                    event(log, "status summary failed", logging.ERROR, error=repr(exc))

    async def stop(self) -> None:
        """Stop the periodic writes; the caller writes the final snapshot
        (``write(snapshot("stopped"))``) once the node is closed. Changes are
        still counted until then (the agent's last flush comes after)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
