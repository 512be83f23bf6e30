"""The cloud's ingestion on every core: entries checked in worker processes
started under a backlog, stopped when idle.

Judging a message (:meth:`IngestCore.judge`) is mostly two checks per entry:
the strict decode (the one canonical encoding, ~35–70 µs) and the Ed25519
signature (~70 µs). In the cloud's process they share one GIL with the MQTT
pump, the chain checks and the sink, so one cloud process ingested at 0.39×
the raw verify rate of one core. With :class:`IngestWorkers` each message's
entries are first checked in :class:`~agent.store.verify_workers.VerifyWorkers`
processes (:func:`~agent.store.verify_workers.check_raws`: strict decode and
signature, each entry alone); a message whose entries all came back good is
then judged in-process with those two checks skipped
(``IngestCore.judge(..., checked=True)``: a loose decode, then exactly the
same admission, access-rule, chain and exactly-once logic), and a message with
any bad entry — or whose batch does not decode — is judged in full in-process
as before, so its rejections and the reply to the board are the same words.

The pool starts when at least ``backlog_bytes`` of messages wait (the group
being ingested and the queue behind it) on a node with more than one core,
and stops after ``idle_s`` seconds without a message checked: a quiet cloud
keeps one process. The group that started it waits for the processes to come
up (:meth:`IngestWorkers.warmed`, at most ``warm_s`` after the start: a fresh
interpreter importing :mod:`agent.entry` takes about 0.1–0.3 s) rather than
being judged in-process meanwhile: judging a whole group of 128 KB messages
in-process took over a second of the main process's CPU, a fifth of a
40 000-entry backlog, while the starting workers waited for that core. Past
``warm_s`` (processes that are slow to start, or never answer), messages are
judged in-process until they are up. What is in flight is bounded by the caller (one group of
messages at a time). If the processes cannot start or die, the pool is
dropped (counted, logged) and messages are judged in-process; the next
backlog tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future

from ..errors import LichenError
from ..logs import event
from ..store.verify_workers import VerifyWorkers, WorkersFailed, pool_size
from ..uplink.wire import MAX_PAYLOAD, BatchError, decode_entry_batch

__all__ = ["AUTO", "IngestWorkers"]

log = logging.getLogger("lichen.cloud")

AUTO = -1  # one worker per core, when there is more than one
#: about 1100 entries of readings; the broker sends at most ``max_inflight`` (64)
#: messages unacknowledged, so what waits here is at most 64 batches
BACKLOG_BYTES = 256 << 10
IDLE_S = 30.0
WARM_S = 5.0  # how long after starting the pool a group waits for it to come up
MIN_MESSAGE_ENTRIES = 8  # a smaller message is judged in-process: the round trip costs more


class IngestWorkers:
    """Worker processes for the cloud's ingestion, started on demand.

    ``workers``: how many processes (:data:`AUTO`: one per core, at most 4,
    none on one core; 0: never). ``always``: keep the pool running whatever
    the backlog (tests and benchmarks compare with and without)."""

    def __init__(
        self,
        *,
        workers: int = AUTO,
        backlog_bytes: int = BACKLOG_BYTES,
        idle_s: float = IDLE_S,
        warm_s: float = WARM_S,
        max_entry_size: int = MAX_PAYLOAD,
        max_payload: int = MAX_PAYLOAD,
        always: bool = False,
    ) -> None:
        self.workers = pool_size() if workers == AUTO else workers
        self.backlog_bytes = backlog_bytes
        self.idle_s = idle_s
        self.warm_s = warm_s
        self.always = always
        self.max_entry_size = max_entry_size
        self.max_payload = max_payload
        self.starts = self.stops = self.failures = 0
        self.checked = self.fell_back = 0
        self._pool: VerifyWorkers | None = None
        self._warming: list[Future[str | None]] = []
        self._last_used = self._started = 0.0

    @property
    def running(self) -> bool:
        return self._pool is not None

    def demand(self, waiting_bytes: int, now: float | None = None) -> bool:
        """``waiting_bytes`` of messages wait to be ingested: start the pool if
        that is a backlog (and it may run). True once its processes are up."""
        now = time.monotonic() if now is None else now
        wanted = self.always or waiting_bytes >= self.backlog_bytes
        if self._pool is None and self.workers > 0 and wanted:
            try:
                pool = VerifyWorkers(self.workers, max_entry_size=self.max_entry_size)
                # one empty batch per process: each starts (about 0.2-2 s: a fresh
                # interpreter); until they all answered, messages are judged in-process
                self._warming = [pool.check([]) for _ in range(self.workers)]
            except (OSError, ValueError, WorkersFailed) as exc:
                self._failed(exc)
                return False
            self._pool, self._started = pool, time.monotonic()
            self.starts += 1
            event(log, "ingest workers started", workers=self.workers,
                  waiting_bytes=waiting_bytes)  # fmt: skip
        if self._pool is None:
            return False
        self._last_used = now
        return self._up()

    def _up(self) -> bool:
        if self._warming and all(f.done() for f in self._warming):
            self._warming = []
        return self._pool is not None and not self._warming

    async def warmed(self) -> bool:
        """After :meth:`demand` said "not yet": wait for the processes being
        started, until ``warm_s`` seconds after their start. True once they
        are up; False if there is no pool or it is still starting then."""
        while self._pool is not None and not self._up():
            if time.monotonic() - self._started >= self.warm_s:
                return False
            await asyncio.sleep(0.005)
        return self._pool is not None

    async def ready(self) -> None:
        """Wait until the processes started are up (tests, benchmarks)."""
        for future in self._warming:
            await asyncio.wrap_future(future)

    async def check(self, payload: bytes) -> bool:
        """True when every entry of the batch ``payload`` decodes strictly and
        its signature verifies (checked in a worker); False when one does not,
        the batch does not decode, it is too small to be worth sending, or
        there is no pool: then the message is judged in full in-process."""
        pool = self._pool
        if pool is None:
            return False
        try:
            raws = decode_entry_batch(payload, self.max_payload)
        except BatchError:
            return False
        if len(raws) < MIN_MESSAGE_ENTRIES:
            return False
        try:
            problem = await pool.verdict(raws)
        except WorkersFailed as exc:
            if self._pool is pool:
                self._pool, self._warming = None, []
                self._failed(exc)
                await asyncio.to_thread(pool.close)
            return False
        if problem is None:
            self.checked += 1
            return True
        self.fell_back += 1
        return False

    async def stop_if_idle(self, now: float | None = None) -> bool:
        """Stop the pool when nothing was checked for ``idle_s`` seconds (not
        when ``always``). True if it stopped."""
        now = time.monotonic() if now is None else now
        if self._pool is None or self.always or now - self._last_used < self.idle_s:
            return False
        await self.close()
        event(log, "ingest workers stopped", idle_s=self.idle_s)
        return True

    async def close(self) -> None:
        pool, self._pool, self._warming = self._pool, None, []
        if pool is not None:
            self.stops += 1
            await asyncio.to_thread(pool.close)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        reason = str(exc) if isinstance(exc, LichenError) else repr(exc)
        event(log, "ingest workers failed; checking in-process", logging.WARNING, error=reason)

    def status(self) -> dict[str, object]:
        return {
            "workers": self.workers,
            "running": self.running,
            "starts": self.starts,
            "stops": self.stops,
            "failures": self.failures,
            "messages_checked": self.checked,
            "messages_fell_back": self.fell_back,
        }
