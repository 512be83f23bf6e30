"""One sync session: the sync driver run against the node's log, over a channel.

:class:`SyncSession` is the asyncio shell of :class:`agent.sync.SyncDriver`
(the spec is ``docs/protocol.md``, "The caller's part"); every decision is
the driver's, and the in-memory reference session runs the same driver. The
shell runs the driver's commands over an open :class:`~agent.channel.Channel`:

* reads (offers, held ranges, hashes, chunks of wanted entries) are bounded
  queries on a read connection to the log — a session never holds a feed in
  memory;
* received entries are verified and stored in batches through the single
  writer (one transaction per batch) while the next ones are read and
  decoded — during a large transfer, proven in worker processes first
  (:mod:`.checking`); their credit goes back only once they are stored, so a
  fast peer can never fill our memory;
* what we send goes through a queue drained by its own task, so a session
  never stops reading while the peer is slow to read (no deadlock when both
  stream at once); the driver produces more only while what waits there
  stays under its bound (``max_unsent``);
* a peer that stops reading, or goes silent mid-exchange, for
  ``stall_timeout`` seconds is ended.

::

    session = SyncSession(channel, SessionLog(reader, writer), me, live=True)
    report = await session.run()          # until BYE, an error, or close()
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..channel import Channel
from ..errors import ChannelError, StoreError
from ..identity import NodeId
from ..sync import (
    ALLOW_ALL,
    DEFAULT_WINDOW,
    MAX_UNSENT,
    AccessPolicy,
    Credit,
    SaveCheckpoint,
    Send,
    Store,
    StoreResult,
    SyncDriver,
    perform_read,
)
from .checking import EntryChecks
from .log_view import SessionLog
from .report import SessionReport
from .send_queue import SendQueue, chunk_for

__all__ = ["SessionLog", "SessionReport", "SyncSession"]

DEFAULT_STALL_TIMEOUT = 60.0
TICK = 1.0  # seconds between looks at the clock (stalls) and at the log (new entries)

_Write = tuple[Store | SaveCheckpoint, "asyncio.Task[list[StoreResult] | None]"]


class SyncSession:
    """Run the sync protocol with the peer at the other end of ``channel``.

    ``live``: ask the peer for LIVE and stay until :meth:`close` (a board);
    otherwise say BYE once both logs are settled (``lichen sync``).
    ``policy``: who may read and write what (:class:`~agent.sync.AccessPolicy`).
    ``on_stored(n)`` is called after entries were stored (a benchmark times a
    contact with it; the gossip learns of every store from the node's "log
    changed" broadcast instead). :meth:`poke` says our log grew.
    """

    def __init__(
        self,
        channel: Channel,
        log: SessionLog,
        me: NodeId,
        *,
        role: str = "board",
        live: bool = False,
        policy: AccessPolicy = ALLOW_ALL,
        window: Credit = DEFAULT_WINDOW,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        max_unsent: int = MAX_UNSENT,
        on_stored: Callable[[int], None] | None = None,
        on_progress: Callable[[SessionReport], None] | None = None,
    ) -> None:
        self.channel, self.log, self.me = channel, log, me
        self.peer: NodeId = channel.peer
        self.live, self.stall_timeout = live, stall_timeout
        self.on_stored, self.on_progress = on_stored, on_progress
        self.report = SessionReport(peer=str(self.peer))
        self.driver = SyncDriver(
            me.key,
            self.peer.key,
            role=role,
            live=live,
            policy=policy,
            clouds=log.clouds(),
            window=window,
            max_entry_size=log.max_entry_size,
            max_unsent=max_unsent,
            stats=self.report,
        )
        self.conn = self.driver.conn
        self._checks = EntryChecks(self.driver, self.report, log.writer)
        self._send = SendQueue(
            channel.send, self._written, chunk=chunk_for(channel.stream.max_frame_hint)
        )
        self._last_progress = time.monotonic()
        self._wake = asyncio.Event()
        self._writes: deque[_Write] = deque()
        self._receiver: asyncio.Task[bytes] | None = None
        #: False once the node forgets this peer's checkpoint (a fleet approval):
        #: the rounds still ending then must not put it back
        self.keeps_checkpoints = True

    # ------------------------------------------------------------- control

    def poke(self) -> None:
        """New entries are in our log: offer them if the peer is live."""
        self.driver.poke()
        self._wake.set()

    def close(self, reason: str = "closing") -> None:
        """Say BYE (after the round in progress) and end once the peer answers."""
        self.driver.close(reason)
        self._wake.set()

    @property
    def finished(self) -> bool:
        return self.driver.finished

    # ----------------------------------------------------------------- run

    async def run(self) -> SessionReport:
        """Run until both said BYE, the peer left, or an error; never raises for
        the peer's faults (they are in the report)."""
        driver = self.driver
        sender = self._send.start(f"sync-send {self.peer}")
        try:
            reader = self.log.reader
            checkpoint = reader.replication.checkpoint(self.peer.key)
            driver.start(checkpoint=checkpoint, last_change=reader.last_change())
            self._execute()
            self._checks.consider()
            await self._loop(sender)
        except (ChannelError, OSError) as exc:
            driver.fail(f"link failed: {exc}")
        except StoreError as exc:
            driver.fail(f"the log failed: {exc}")
        finally:
            await self._end()
        return self.report

    async def _loop(self, sender: asyncio.Task[None]) -> None:
        driver = self.driver
        next_tick = time.monotonic() + TICK
        while not driver.finished:
            if self._receiver is None and driver.wants_data:  # else: back-pressure
                self._receiver = asyncio.create_task(self.channel.receive())
            receiver = self._receiver
            woken = asyncio.create_task(self._wake.wait())
            waits: set[asyncio.Future[Any]] = {woken, sender}
            if receiver is not None:
                waits.add(receiver)
            if self._writes:
                waits.add(self._writes[0][1])
            timeout = max(0.0, next_tick - time.monotonic())
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            self._wake.clear()
            if sender in done:
                sender.result()  # raises ChannelError if the link broke
                return
            self._collect_writes()
            if receiver is not None and receiver in done:
                self._receiver = None
                data = receiver.result()
                self._last_progress = time.monotonic()
                driver.receive_data(data)
            now = time.monotonic()
            if now >= next_tick:  # on a timer, however busy the peer keeps us
                self._check_stall(now)
                driver.poke()  # another process (the CLI) may have added entries
                next_tick = now + TICK
            self._execute()
            self._checks.consider()

    async def _end(self) -> None:
        receiver = self._receiver
        if receiver is not None:
            receiver.cancel()
        try:
            await self._finish()
        finally:
            await self._checks.close()
        await self._send.finish(timeout=min(5.0, self.stall_timeout))
        await self.channel.close()
        if receiver is not None:  # it may have failed too, even after cancel(): retrieve it
            await asyncio.gather(receiver, return_exceptions=True)
        report, conn = self.report, self.conn
        report.clean = conn.closed
        report.sync_bytes_sent = conn.bytes_sent
        report.sync_bytes_received = conn.bytes_received
        report.seconds = time.monotonic() - report.started

    def _check_stall(self, now: float) -> None:
        """End a session whose peer stopped reading, or went silent mid-exchange."""
        unsent = now - self._send.last_write
        if self._send.pending > 0 and unsent >= self.stall_timeout:
            self.driver.fail(
                f"the peer stopped reading: {self._send.pending} bytes unsent for {unsent:.0f} s",
                protocol=True,
            )
            return
        quiet = now - max(self._last_progress, self._send.last_write)
        if quiet >= self.stall_timeout and self.driver.waiting_for_peer:
            self.driver.fail(f"the peer went silent for {quiet:.0f} s mid-exchange", protocol=True)

    def _written(self, nbytes: int) -> None:
        self.driver.sent(nbytes)
        self._wake.set()  # the driver may have more to say now

    # ------------------------------------------------------------ commands

    def _execute(self) -> None:
        """Run the driver's commands: sends queue, writes start, reads are answered."""
        driver = self.driver
        while (command := driver.next_command()) is not None:
            if isinstance(command, Send):
                self._send.put(command.data)
            elif isinstance(command, Store):
                self._writes.append((command, self._checks.store(command)))
            elif isinstance(command, SaveCheckpoint):
                task = asyncio.create_task(self._save_checkpoint(command.change))
                self._writes.append((command, task))
            else:
                driver.read_done(perform_read(self.log, command))

    def _collect_writes(self) -> None:
        """Hand the driver the answers of writes done, in the order they were asked."""
        while self._writes and self._writes[0][1].done():
            command, task = self._writes.popleft()
            self._answer(command, task.result())  # raises StoreError if the log failed

    def _answer(self, command: Store | SaveCheckpoint, results: list[StoreResult] | None) -> None:
        if not isinstance(command, Store) or results is None:
            return
        self.driver.stored(results)
        stored = sum(1 for result in results if result is True)
        if stored and self.on_stored is not None:
            self.on_stored(stored)
        if self.on_progress is not None:
            self.on_progress(self.report)

    async def _finish(self) -> None:
        """At the end: what the driver still asked (its last ERROR or BYE, entries
        that came before a fault), and every write in flight, answered."""
        self._execute()
        while self._writes:
            command, task = self._writes.popleft()
            (result,) = await asyncio.gather(task, return_exceptions=True)
            if isinstance(result, list):
                self._answer(command, result)
            self._execute()

    async def _save_checkpoint(self, change: int) -> list[StoreResult] | None:
        if self.keeps_checkpoints:  # read when the write is queued, in order with a forget
            await self.log.writer.set_checkpoint(self.peer.key, change)
        return None
