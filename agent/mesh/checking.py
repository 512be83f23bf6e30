"""A session's received entries checked on every core during a large transfer.

A receiving session spends most of its time on two checks per entry: the
strict decoding (the one canonical encoding) and the Ed25519 signature. In
the agent's process both fight over the GIL with Noise, framing and the
session's own work (docs/performance.md, "Sync"). So once a session knows it
will receive at least :data:`~agent.store.verify_workers.MIN_ENTRIES` entries
(the peer's offer less what it holds: ``entries_wanted``) on a node with more
than one core, :class:`EntryChecks` starts worker processes
(:class:`~agent.store.verify_workers.VerifyWorkers`) and has the driver
decode ENTRY frames loosely (only what it needs: feed, seq, prev, collection);
each batch the driver hands over is proven by a worker, then stored without
checking its signature again (the writer still follows chains and forks).
The workers stop once the peer's round is over and every batch is stored,
and when the session ends however it ends: a quiet board keeps its
footprint, and nothing stays behind.

A batch a worker finds bad is checked again here, entry by entry, exactly as
a session without workers checks it: the entries before the fault are
stored, and the session ends with the same error (a frame that is not
canonical: the connection's protocol error; a forged signature: the
writer's). If the workers cannot start or die, the rest is checked here.
Memory stays bounded by flow control: credit goes back only once stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..entry import Entry
from ..errors import RemoteProtocolError
from ..store.commands import Insert
from ..store.log_store import InsertOutcome
from ..store.verify_workers import VerifyWorkers, WorkersFailed, workers_for
from ..store.writer import LogWriter
from ..sync import FrameRefused, State, Store, StoreResult, SyncDriver
from ..sync.wire import check_entry
from .report import SessionReport

__all__ = ["EntryChecks", "store_results"]

log = logging.getLogger("lichen.mesh")


def store_results(outcomes: Sequence[InsertOutcome | ValueError]) -> list[StoreResult]:
    """The writer's outcomes as the driver's answer: stored, held already, or refused."""
    return [
        outcome if isinstance(outcome, ValueError) else outcome is InsertOutcome.STORED
        for outcome in outcomes
    ]


class EntryChecks:
    """Stores a session's received entries, through worker processes while a
    large transfer lasts (see the module). Call :meth:`consider` after each
    turn of the session, :meth:`store` for each :class:`Store`, and
    :meth:`close` at the end."""

    def __init__(self, driver: SyncDriver, report: SessionReport, writer: LogWriter) -> None:
        self.driver, self.report, self.writer = driver, report, writer
        self._pool: VerifyWorkers | None = None
        self._failed = False  # the workers failed once: not again in this session
        self._pending = 0  # loosely decoded batches not yet stored
        self._last: asyncio.Task[list[StoreResult] | None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def consider(self) -> None:
        """Start the workers when a large transfer begins; stop them once it is over."""
        driver, report = self.driver, self.report
        if self._pool is None:
            if self._failed or driver.finished:
                return
            workers = workers_for(report.entries_wanted - report.entries_received)
            if workers:
                self._start(workers)
        elif self._pending == 0 and driver.conn.their_state not in (
            State.AWAIT_WANTS,
            State.SENDING,
        ):
            self._stop()

    def _start(self, workers: int) -> None:
        self._pool = VerifyWorkers(workers, max_entry_size=self.driver.conn.max_entry_size)
        self.driver.decode_loosely(True)
        log.info("checking a transfer from %s in %d worker processes", self.report.peer, workers)

    def _stop(self) -> None:
        pool, self._pool = self._pool, None
        if not self.driver.finished:
            self.driver.decode_loosely(False)
        if pool is not None:  # joining the processes blocks: not on the event loop
            previous = self._closing

            async def close() -> None:
                if previous is not None:
                    await previous
                await asyncio.to_thread(pool.close)

            self._closing = asyncio.create_task(close())

    async def close(self) -> None:
        """Stop the workers (if running) and wait until they are gone."""
        self._stop()
        if self._closing is not None:
            await asyncio.shield(self._closing)

    # -------------------------------------------------------------- storing

    def store(self, command: Store) -> asyncio.Task[list[StoreResult] | None]:
        """Store ``command``'s entries (proven first if they were decoded loosely)
        in a task; batches reach the writer in the order they were asked."""
        previous = self._last
        if command.strict:
            return asyncio.create_task(self._store_strict(command.entries, previous))
        self._pending += 1
        task = asyncio.create_task(self._store_loose(command.entries, previous))
        self._last = task
        return task

    async def _store_strict(
        self, entries: Sequence[Entry], previous: asyncio.Task[list[StoreResult] | None] | None
    ) -> list[StoreResult] | None:
        if previous is not None and not previous.done():  # after the batches proven apart
            await asyncio.wait([previous])
        return await self._receive(entries)

    async def _store_loose(
        self, entries: Sequence[Entry], previous: asyncio.Task[list[StoreResult] | None] | None
    ) -> list[StoreResult] | None:
        try:
            proven = await self._check(entries)
            if previous is not None:  # the writer stores batches in the order they came
                await asyncio.wait([previous])
            if proven:
                self.report.entries_checked_apart += len(entries)
                return store_results(await self.writer.execute_many([Insert(e) for e in entries]))
            return await self._check_here(entries)
        finally:
            self._pending -= 1

    async def _check(self, entries: Sequence[Entry]) -> bool:
        """Whether the workers found every entry good (False: check them here)."""
        pool = self._pool
        if pool is None:
            return False
        try:
            problem = await pool.verdict([entry.raw for entry in entries])
        except WorkersFailed as exc:
            if self._pool is pool:
                log.warning("entry-checking processes failed (%s); checking in this process", exc)
                self._failed = True
                self._stop()
            return False
        return problem is None

    async def _check_here(self, entries: Sequence[Entry]) -> list[StoreResult]:
        """As a session without workers: decode strictly up to the first entry that
        is not canonical (its frame is refused), verify and store the rest."""
        limit = self.driver.conn.max_entry_size
        for index, entry in enumerate(entries):
            try:
                check_entry(entry.raw, limit)
            except RemoteProtocolError as exc:
                refused: list[StoreResult] = [FrameRefused(str(exc))] * (len(entries) - index)
                stored = await self._receive(entries[:index]) if index else []
                return stored + refused
        return await self._receive(entries)

    async def _receive(self, entries: Sequence[Entry]) -> list[StoreResult]:
        return store_results(await self.writer.receive_many(entries))  # verified in its thread
