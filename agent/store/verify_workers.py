"""Checking received entries on every core: strict decoding and signatures in
worker processes, started on demand for large transfers.

Every entry that arrives from elsewhere is decoded strictly (the one canonical
encoding) and its Ed25519 signature checked: about 35 µs and 70 µs. In one
process both hold or fight over the GIL, so a large transfer is checked at
most at the rate of one core, and less while the same process also reads,
chains and stores. Here the two checks run in worker processes, one per core
(at most :data:`MAX_WORKERS`), while the calling process goes on reading,
following each feed's chain and storing. A worker only says whether each
entry, *alone*, is good; order and chains stay with the caller.

The workers are started only for a transfer of at least :data:`MIN_ENTRIES`
entries on a node with more than one core (:func:`workers_for`), and stopped
when it ends: a quiet board keeps its footprint, and nothing stays behind.
They are started with ``spawn``: a fresh interpreter importing this module
and :mod:`agent.entry` (the :mod:`agent.store` package imports its names
lazily) and running the parent's main script again, which for ``lichen`` is
the light :mod:`agent.__main__`: about 0.1 s of CPU, paid once per transfer.
They are never forked from the agent, whose threads make ``fork`` unsafe;
``forkserver`` starts faster but leaves its server process running for the
rest of the agent's life. A main
script must guard its work with ``if __name__ == "__main__"`` (the workers
import it); if the workers cannot start or die, :class:`WorkersFailed` says
so and the caller checks in-process. At most two batches per worker are in
flight, so memory stays bounded whatever the transfer's size.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Hashable
from concurrent.futures import BrokenExecutor, Executor, Future
from types import TracebackType

from ..entry import DEFAULT_MAX_ENTRY_SIZE, verify_entry
from ..entry_lazy import decode_strictly
from ..errors import EntryError, LichenError

__all__ = [
    "MAX_WORKERS",
    "MIN_ENTRIES",
    "CheckFailed",
    "VerifyWorkers",
    "check_raws",
    "pool_size",
    "workers_for",
]

MIN_ENTRIES = 8192  # below this (about a second of checking), starting processes costs too much
MAX_WORKERS = 4
IN_FLIGHT_PER_WORKER = 2


class CheckFailed(EntryError):
    """An entry of the batch submitted as ``tag`` is forged, corrupt or oversized."""

    def __init__(self, tag: Hashable, reason: str) -> None:
        super().__init__(reason)
        self.tag = tag


class WorkersFailed(LichenError):
    """The worker processes could not be started or died (out of memory, a
    process limit, a main script that starts work when imported): check the
    transfer in-process instead."""


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def workers_for(entries: int) -> int:
    """How many worker processes a transfer of ``entries`` entries gets: none
    for a small one or on a single core (checked in-process, as before)."""
    if entries < MIN_ENTRIES:  # asked at every turn of a session: no system call then
        return 0
    return pool_size()


def pool_size() -> int:
    """How many worker processes a large transfer gets on this node: one per
    core, at most :data:`MAX_WORKERS`, none on a single core."""
    available = cores()
    return 0 if available < 2 else min(available, MAX_WORKERS)


def check_raws(raws: list[bytes], max_size: int = DEFAULT_MAX_ENTRY_SIZE) -> str | None:
    """Decode each of ``raws`` strictly and check its signature; the first
    problem, worded as in-process checking words it, or ``None`` when every one
    is good. This runs in a worker process."""
    for raw in raws:
        try:
            verify_entry(decode_strictly(raw, max_size=max_size))
        except EntryError as exc:
            return str(exc)
    return None


def _executor(workers: int) -> Executor:
    """The process pool (imported only when a transfer needs it: a quiet node
    never loads the process machinery)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class VerifyWorkers:
    """A pool of checking processes for one transfer; use as a context manager.

    :meth:`submit` a batch of raw entries under a tag (e.g. a chunk number);
    a batch found bad raises :class:`CheckFailed` with its tag from a later
    :meth:`submit` or from :meth:`finish`, which waits for every batch.
    Batches are judged in submission order: the failure raised is always the
    earliest bad batch's.
    """

    def __init__(self, workers: int, *, max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._pool = _executor(workers)
        self._max_entry_size = max_entry_size
        self._limit = workers * IN_FLIGHT_PER_WORKER
        self._in_flight: deque[tuple[Hashable, Future[str | None]]] = deque()
        self.batches = 0
        self.entries = 0

    def submit(self, tag: Hashable, raws: list[bytes]) -> None:
        while len(self._in_flight) >= self._limit:
            self._settle_oldest()
        self._in_flight.append((tag, self.check(raws)))
        self.batches += 1
        self.entries += len(raws)

    def check(self, raws: list[bytes]) -> Future[str | None]:
        """One batch checked on its own, out of order: the future's result is
        :func:`check_raws`'s (``None``: every entry is good). The caller bounds
        how many are in flight; a dead pool raises :class:`WorkersFailed` here,
        or ``BrokenExecutor`` (``BrokenProcessPool``) from the future."""
        try:
            return self._pool.submit(check_raws, raws, self._max_entry_size)
        except (BrokenExecutor, RuntimeError, OSError) as exc:
            raise WorkersFailed(f"cannot start entry-checking processes: {exc}") from exc

    async def verdict(self, raws: list[bytes]) -> str | None:
        """:meth:`check` awaited on an event loop: ``None`` when every entry is
        good, else the first problem; a pool that cannot start or died raises
        :class:`WorkersFailed` (the caller checks in-process)."""
        import asyncio

        try:
            return await asyncio.wrap_future(self.check(raws))
        except (BrokenExecutor, OSError) as exc:
            raise WorkersFailed(f"an entry-checking process died: {exc}") from exc

    def finish(self) -> None:
        """Wait for every batch submitted; raise the earliest failure."""
        while self._in_flight:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        tag, future = self._in_flight.popleft()
        try:
            problem = future.result()
        except (BrokenExecutor, OSError) as exc:
            self._cancel()
            raise WorkersFailed(f"an entry-checking process died: {exc}") from exc
        if problem is not None:
            self._cancel()
            raise CheckFailed(tag, problem)

    def _cancel(self) -> None:
        for _, future in self._in_flight:
            future.cancel()
        self._in_flight.clear()

    def close(self) -> None:
        self._cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> VerifyWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
