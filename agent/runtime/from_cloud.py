"""What a board does with its clouds' beacons and commands, whichever path they took.

A cloud's ``_time`` beacons and ``_commands`` are entries of its own feed
(:mod:`agent.cloud_feed`): they reach the board's log by the MQTT ack topic,
gossip, a bundle or a mule. :class:`FromCloud` reads every such entry newly
stored — told by the node's "log changed" broadcast, and once a second for
what another process (``lichen bundle import``) stored — and hands those of
the accepted clouds (``[retention] ack_from``) to the
:class:`~agent.runtime.timekeeper.Timekeeper`; what they decide to record
(``_clock`` corrections) is appended to this node's feed.

Beacons stored before the agent started are not looked at: when they arrived
is unknown, so they are stale by rule (``docs/time.md``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..aio import cancel_and_wait, wait_event
from ..cloud_feed import TIME_COLLECTION
from ..entry import Entry, decode_entry
from ..errors import LichenError
from ..logs import event
from ..store.log_store import LogStore
from .timekeeper import Timekeeper, mono_ms

if TYPE_CHECKING:
    from ..node import LogChange, Node

__all__ = ["FromCloud", "entries_since"]

log = logging.getLogger("lichen.clock")
POLL_S = 1.0
PAGE = 256


def entries_since(
    reader: LogStore, collections: Sequence[str], after: int, limit: int = PAGE
) -> tuple[list[Entry], int]:
    """Entries of ``collections`` stored after local change ``after`` (at most
    ``limit``, oldest first), and the change up to which the log was read."""
    last = reader.last_change()
    if last <= after:
        return [], after
    marks = ",".join("?" * len(collections))
    ids = [row[0] for row in reader.connection.execute(
        f"SELECT id FROM collections WHERE name IN ({marks})", tuple(collections)
    )]  # fmt: skip
    if not ids:
        return [], last
    # `+collection` keeps SQLite on the primary key: only the new rows are read
    rows = reader.connection.execute(
        f"SELECT change, raw FROM entries WHERE change > ? AND +collection IN "
        f"({','.join('?' * len(ids))}) ORDER BY change LIMIT ?",
        (after, *ids, limit),
    ).fetchall()
    if len(rows) == limit:
        last = int(rows[-1][0])
    out = [decode_entry(bytes(raw), strict=False, max_size=len(raw)) for _, raw in rows]
    return out, last


class FromCloud:
    """Reads the clouds' beacons (and commands) as they are stored, and acts on them."""

    def __init__(
        self, node: Node, timekeeper: Timekeeper, clouds: Callable[[], frozenset[bytes]]
    ) -> None:
        self.node, self.timekeeper, self.clouds = node, timekeeper, clouds
        self.wake = asyncio.Event()
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """From now on (what is in the log already arrived at an unknown time)."""
        self._cursor = self.node.reader.last_change()
        self._unsubscribe = self.node.changed.subscribe(self._changed)
        self._task = asyncio.create_task(self._run(), name="from-cloud")

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    def _changed(self, _change: LogChange) -> None:
        self.wake.set()

    async def _run(self) -> None:
        while True:
            await wait_event(self.wake, POLL_S)
            self.wake.clear()
            try:
                await self.scan()
            except LichenError as exc:
                event(log, "reading the clouds' entries failed", logging.ERROR, error=str(exc))

    async def scan(self) -> int:
        """Act on what was stored since the last scan; returns how many entries
        of the clouds' collections were read."""
        seen = 0
        while True:
            entries, self._cursor = entries_since(
                self.node.reader, (TIME_COLLECTION,), self._cursor
            )
            if not entries:
                return seen
            seen += len(entries)
            received = mono_ms()
            clock = self.node.clock
            records = self.timekeeper.consider(
                [(e, received) for e in entries],
                self.clouds(),
                clock.physical_now,
            )
            if records:
                await self.node.writer.append_many(records)
