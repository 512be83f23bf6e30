"""The single writer: one thread owns the write connection; group commit.

Every write the agent makes goes through one :class:`LogWriter`. Requests
queue up while a commit is in progress and the next commit takes all of them
(up to ``max_batch``) in one transaction — one fsync for many entries when
durability is ``full``. Callers await their own result; an entry-level error
(a fork, a bad chain) comes back to its caller only, while a store-level
failure (disk full) fails that whole batch and nothing in it is acknowledged.

The event loop never blocks on SQLite: the thread does the I/O and signing
and hands results back through futures.

After every commit that stored entries, the writer's thread calls
``on_commit`` with a :class:`LogChange` (which feeds grew, by how many), before
the callers are answered: :class:`agent.node.Node` turns it into the node's
"log changed" broadcast.

What may be written is a typed list (:mod:`agent.store.commands`): the
writer runs :class:`~agent.store.commands.WriteCommand` values
(:meth:`LogWriter.execute`, :meth:`LogWriter.execute_many`), and its other
methods are shorthands for the common ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..clock import HybridClock
from ..entry import Entry
from ..errors import StoreError
from ..identity import Identity
from .commands import (
    Append,
    Compact,
    ForgetCheckpoint,
    Insert,
    Prune,
    Receive,
    Refuse,
    SetCheckpoint,
    WriteCommand,
)
from .log_store import Draft, InsertOutcome, LogStore

__all__ = ["LogChange", "LogWriter", "WriterStats"]

log = logging.getLogger("lichen.store")

_STOP = object()
T = TypeVar("T")


@dataclass(slots=True)
class WriterStats:
    commits: int = 0
    operations: int = 0
    entries_appended: int = 0
    largest_batch: int = 0
    last_commit_ms: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class LogChange:
    """What one committed transaction added to the log: new entries per author
    (duplicates, refused entries and pruning are not changes)."""

    feeds: Mapping[bytes, int]

    @property
    def entries(self) -> int:
        return sum(self.feeds.values())


@dataclass(slots=True)
class _Request:
    """One caller's operations. ``many``: the caller gets every operation's result
    (errors included, as values); otherwise the single result or its error."""

    operations: Sequence[WriteCommand[Any]]
    many: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class LogWriter:
    """Async facade over a :class:`LogStore` living in its own thread.

    ``open_store`` is called inside the thread (SQLite connections belong to the
    thread that uses them). A node's writer is made by :class:`agent.node.Node`,
    with the node's store settings, identity and clock::

        async with Node(path, identity) as node:
            entry = await node.writer.append("events/door", {"open": True})

    ``on_commit`` (a :class:`LogChange`) runs in the writer's thread: it must
    be quick and thread-safe (``loop.call_soon_threadsafe``).
    """

    def __init__(
        self,
        open_store: Callable[[], LogStore],
        identity: Identity,
        clock: HybridClock,
        *,
        max_batch: int = 512,
        on_commit: Callable[[LogChange], None] | None = None,
    ) -> None:
        self._open_store = open_store
        self.on_commit = on_commit
        self.identity = identity
        self.clock = clock
        self.max_batch = max_batch
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = concurrent.futures.Future[None]()
        #: turns drafts into what is signed (a fleet node seals the drafts of
        #: sealed collections: :class:`agent.fleet.view.FleetSealing`); None: as given
        self.seal: Callable[[Sequence[Draft]], Sequence[Draft]] | None = None

    def start(self) -> None:
        """Start the thread and wait until the store is open (raises its error)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="lichen-writer", daemon=True)
        self._thread.start()
        self._ready.result()

    async def close(self) -> None:
        """Finish every queued request, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

    # ----------------------------------------------------------- operations

    async def _submit(self, operations: Sequence[WriteCommand[Any]], *, many: bool = False) -> Any:
        if self._thread is None:
            raise StoreError("the log writer is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Request(operations, many, loop, future))
        return await future

    async def execute(self, command: WriteCommand[T]) -> T:
        """Run ``command`` in the next group transaction; its result, or its error."""
        result: T = await self._submit([command])
        return result

    async def execute_many(self, commands: Sequence[WriteCommand[T]]) -> list[T | ValueError]:
        """Run ``commands`` in one request and one transaction; each succeeds or is
        refused on its own (its ``ValueError`` in its place). A store-level failure
        (a full disk) fails them all: it is raised."""
        results: list[T | ValueError] = await self._submit(commands, many=True)
        return results

    async def append_groups(
        self, groups: Sequence[Sequence[Draft]]
    ) -> list[list[Entry] | ValueError]:
        """Append several groups of drafts in one request and one transaction; each
        group succeeds or fails on its own (its error — an :class:`EntryError` or
        another ``ValueError`` naming the bad field — is returned in its place).
        The agent's flush writes every collection's batch this way."""

        def command(group: Sequence[Draft]) -> WriteCommand[list[Entry]]:
            try:
                return Append(self.identity, self.clock, self._ready_drafts(group))
            except ValueError as exc:
                return Refuse(exc)

        return await self.execute_many([command(group) for group in groups])

    async def append_many(self, drafts: Sequence[Draft]) -> list[Entry]:
        """Sign and store ``drafts`` as consecutive entries of our own feed.

        Bodies are encoded here, on the caller's thread, so that work overlaps
        with the writer's signing and storing."""
        return await self.execute(Append(self.identity, self.clock, self._ready_drafts(drafts)))

    def _ready_drafts(self, drafts: Sequence[Draft]) -> list[Draft]:
        """``drafts`` sealed (if :attr:`seal` says so) and with their bodies encoded."""
        sealed = self.seal(drafts) if self.seal is not None else drafts
        return [d.encoded_copy() for d in sealed]

    async def append(self, collection: str, body: Any, doc_id: str | None = None) -> Entry:
        (entry,) = await self.append_many([Draft(collection, body, doc_id)])
        return entry

    async def insert(self, entry: Entry) -> InsertOutcome:
        """Store a verified foreign entry (see :meth:`LogStore.insert_now`)."""
        return await self.execute(Insert(entry))

    async def receive_many(self, entries: Sequence[Entry]) -> list[InsertOutcome | ValueError]:
        """Verify and store entries that came from elsewhere (a peer), in one
        transaction: each is checked on its own — its signature here, in the
        writer thread (libsodium releases the GIL meanwhile), then the store's
        chain and fork rules — and a refused entry's
        :class:`~agent.errors.EntryError` is returned in its place."""
        return await self.execute_many([Receive(entry) for entry in entries])

    async def prune(self, author: bytes, below_seq: int) -> int:
        """See :class:`~agent.store.commands.Prune`."""
        return await self.execute(Prune(author, below_seq))

    async def compact(self, author: bytes) -> int:
        """See :class:`~agent.store.commands.Compact`."""
        return await self.execute(Compact(author))

    async def set_checkpoint(self, peer: bytes, change: int) -> None:
        """See :class:`~agent.store.commands.SetCheckpoint`."""
        await self.execute(SetCheckpoint(peer, change))

    async def forget_checkpoint(self, peer: bytes | None) -> None:
        """See :class:`~agent.store.commands.ForgetCheckpoint`."""
        await self.execute(ForgetCheckpoint(peer))

    # ------------------------------------------------------------- thread

    def _run(self) -> None:
        try:
            store = self._open_store()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch: list[_Request] = [first]
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(store, batch)
        finally:
            store.close()

    def _commit(self, store: LogStore, batch: list[_Request]) -> None:
        operations = [_bind(op, store) for request in batch for op in request.operations]
        started = time.perf_counter()
        stored: Mapping[bytes, int] = {}
        try:
            flat: list[Any] = store.batch(operations)
        except BaseException as exc:
            self.stats.last_error = str(exc)
            flat = [exc] * len(operations)
        else:
            stored = store.last_stored
            self.stats.commits += 1
            self.stats.operations += len(operations)
            self.stats.largest_batch = max(self.stats.largest_batch, len(operations))
            self.stats.last_commit_ms = (time.perf_counter() - started) * 1000
            self.stats.entries_appended += sum(len(r) for r in flat if isinstance(r, list))
        if stored and self.on_commit is not None:
            self._announce(LogChange(stored))
        # one wake-up per event loop for the whole batch, not one per request
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Any]]] = {}
        position = 0
        for request in batch:
            results = flat[position : position + len(request.operations)]
            position += len(request.operations)
            if request.many:
                # a store-level failure (or a bug) still fails the whole request
                failure = next(
                    (
                        r
                        for r in results
                        if isinstance(r, BaseException) and not isinstance(r, ValueError)
                    ),
                    None,
                )
                outcome: Any = failure if failure is not None else results
            else:
                outcome = results[0]
            by_loop.setdefault(request.loop, []).append((request, outcome))
        for loop, pairs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, pairs)

    def _announce(self, change: LogChange) -> None:
        """``on_commit``, before the callers hear back; its failure is not theirs."""
        assert self.on_commit is not None
        try:
            self.on_commit(change)
        except Exception:  # a bug in the hook must not stop the writer
            log.exception("the writer's on_commit hook failed")


def _resolve(pairs: list[tuple[_Request, Any]]) -> None:
    for request, result in pairs:
        if request.future.done():  # cancelled by its caller
            continue
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)


def _bind(command: WriteCommand[Any], store: LogStore) -> Callable[[], Any]:
    return lambda: command.apply(store)
