"""Ingestion without MQTT: messages in, stored entries and acknowledgements out.

:class:`Ingestor` joins the sans-IO :class:`~agent.cloud.core.IngestCore`, a
:class:`~agent.cloud.sink.Sink` and the cloud's own
:class:`~agent.store.writer.LogWriter` (which signs the ``_acks`` entries).
The MQTT shell hands it messages and acknowledges them to the broker once
:meth:`Ingestor.ingest_many` has returned — everything is durably stored by
then. Benchmarks and tests call it directly::

    ingestor = Ingestor(IngestCore(), sink, writer)
    await sink.open()
    report = await ingestor.ingest("lichen/v1/farm/lc1…/up", payload)
    for publication in await ingestor.due_acks(time.monotonic()):
        ...  # publish publication.payload on publication.topic, QoS 1, retained

Every rejection is logged (topic, entry, reason) and counted; it never
stops the ingestion of the other entries or messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.cloud import CloudConfig
from ..errors import ChainError, ForkError, StoreError
from ..identity import Identity
from ..logs import event
from ..mesh.trust import TrustStore
from ..store.log_store import InsertOutcome
from ..store.writer import LogWriter
from .core import (
    FIXES,
    AckCoalescer,
    AckPublication,
    IngestCore,
    Judgement,
    Rejection,
    merge_current,
)
from .sink import QuotaExceeded, Sink, SinkError, StoreResult

if TYPE_CHECKING:
    from ..home import Home
    from .ingest_workers import IngestWorkers

__all__ = [
    "IngestReport",
    "IngestStats",
    "Ingestor",
    "admitted_authors",
    "make_sink",
    "sqlite_ingestor",
]

log = logging.getLogger("lichen.cloud")


@dataclass(slots=True)
class IngestReport:
    """What became of one message."""

    topic: str
    stored: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    acks_written: int = 0

    @property
    def rejected(self) -> int:
        return len(self.rejections)


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    bytes: int = 0
    entries_stored: int = 0
    duplicates: int = 0
    messages_rejected: int = 0
    entries_rejected: int = 0
    rejected_by_kind: Counter[str] = field(default_factory=Counter)
    acks_written: int = 0
    acks_published: int = 0
    last_ingest_ms: int | None = None
    last_rejection: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Every field, in order (the rejections by kind sorted)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["rejected_by_kind"] = dict(sorted(self.rejected_by_kind.items()))
        return out


def _refusal(judgement: Judgement, index: int, where: str, error: ValueError) -> Rejection:
    kind = "fork" if isinstance(error, ForkError) else "malformed"
    if isinstance(error, ChainError):
        kind = "chain"
    elif isinstance(error, QuotaExceeded):
        kind = "quota"
    reason = getattr(error, "reason", str(error))
    return Rejection(judgement.topic, kind, reason, index, where)


class Ingestor:
    """Verifies, stores exactly once, signs acknowledgements, coalesces them."""

    def __init__(
        self,
        core: IngestCore,
        sink: Sink,
        writer: LogWriter,
        *,
        ack_interval: float = 0.5,
        workers: IngestWorkers | None = None,
    ) -> None:
        self.core = core
        self.sink = sink
        self.writer = writer
        self.workers = workers
        self.coalescer = AckCoalescer(ack_interval)
        self.stats = IngestStats()

    async def ingest(self, topic: str, payload: bytes) -> IngestReport:
        (report,) = await self.ingest_many([(topic, payload)])
        return report

    async def ingest_many(
        self, messages: Sequence[tuple[str, bytes]], *, waiting_bytes: int = 0
    ) -> list[IngestReport]:
        """Judge, store (one sink call for all), acknowledge. Raises
        :class:`~agent.cloud.sink.SinkError` when nothing could be stored: the
        caller retries the same messages later (storing is idempotent).
        ``waiting_bytes``: what waits behind these messages (a backlog starts
        the :attr:`workers`)."""
        workers = self.workers
        if workers is not None:
            backlog = waiting_bytes + sum(len(payload) for _, payload in messages)
            if workers.demand(backlog) or await workers.warmed():
                judging = [self._judge_checked(workers, t, bytes(p)) for t, p in messages]
                return await self._store_judged([asyncio.create_task(j) for j in judging])
        # decoding and Ed25519 checks are CPU work: off the event loop (libsodium
        # releases the GIL, so several batches verify in parallel)
        # every message is judged on a thread at once; each is stored as soon as
        # its judgement is in, so storing one overlaps judging the next
        pending = [
            asyncio.create_task(asyncio.to_thread(self.core.judge, topic, bytes(payload)))
            for topic, payload in messages
        ]
        return await self._store_judged(pending)

    async def _judge_checked(self, workers: IngestWorkers, topic: str, payload: bytes) -> Judgement:
        """Entries checked in a worker first; judged without those checks if all
        were good, in full (the same rejections as ever) if not."""
        checked = await workers.check(payload)
        judge = functools.partial(self.core.judge, topic, payload, checked=checked)
        return await asyncio.to_thread(judge)

    async def ingest_entries(
        self, source: str, raws: Sequence[bytes], *, signatures_verified: bool = False
    ) -> IngestReport:
        """Entries that came another way than MQTT (a bundle): judged as an upload's
        entries are (:meth:`IngestCore.judge_entries`), stored, acknowledged in the
        cloud's log (the acknowledgements travel by gossip and the next publication
        on the boards' ack topics). Raises SinkError as :meth:`ingest_many` does."""
        judge = functools.partial(
            self.core.judge_entries, source, raws, signatures_verified=signatures_verified
        )
        task = asyncio.create_task(asyncio.to_thread(judge))
        (report,) = await self._store_judged([task])
        return report

    async def _store_judged(self, pending: list[asyncio.Task[Judgement]]) -> list[IngestReport]:
        judgements: list[Judgement] = []
        result: StoreResult | None = None
        try:
            for task in pending:
                judgement = await task
                judgements.append(judgement)
                if judgement.accepted:
                    stored = await self.sink.store(judgement.accepted)
                    result = stored if result is None else _merged(result, stored)
        finally:
            for task in pending:
                task.cancel()
        reports = [IngestReport(j.topic, rejections=list(j.rejections)) for j in judgements]
        position = 0
        for judgement, report in zip(judgements, reports, strict=True):
            for item in judgement.accepted:
                assert result is not None
                outcome = result.outcomes[position]
                position += 1
                if isinstance(outcome, ValueError):
                    report.rejections.append(
                        _refusal(judgement, item.index, item.entry.where, outcome)
                    )
                elif outcome is InsertOutcome.STORED:
                    report.stored += 1
                else:
                    report.duplicates += 1
        if result is not None:
            progress = {a: p.contiguous for a, p in result.feeds.items()}
            acked = {a: p.acked for a, p in result.feeds.items()}
            clouds = {a for a, p in result.feeds.items() if p.cloud}
            drafts = self.core.plan_acks(progress, acked, clouds)
            if drafts:
                try:
                    entries = await self.writer.append_many(drafts)
                except (StoreError, OSError) as exc:  # retried like a sink failure
                    raise SinkError(f"signing acknowledgements failed: {exc}") from exc
                await self.sink.record_acks(entries)
                self.stats.acks_written += len(entries)
            # a publication on <node>/ack always carries <node>'s own acknowledgement:
            # a batch on someone else's topic cannot take it out of the retained one
            uploaders = {j.uploader_key for j in judgements if j.uploader_key is not None}
            current = await self.sink.current_acks(sorted(set(result.feeds) | uploaders))
            for judgement in judgements:
                if judgement.ack_topic is not None and judgement.accepted:
                    feeds = {a.entry.author for a in judgement.accepted}
                    if judgement.uploader_key is not None:
                        feeds.add(judgement.uploader_key)
                    self.coalescer.offer(judgement.ack_topic, merge_current(feeds, current))
        self._account(judgements, reports)
        return reports

    def _account(self, judgements: Sequence[Judgement], reports: Sequence[IngestReport]) -> None:
        stats = self.stats
        stats.last_ingest_ms = time.time_ns() // 1_000_000
        for judgement, report in zip(judgements, reports, strict=True):
            stats.messages += 1
            stats.bytes += judgement.size
            stats.entries_stored += report.stored
            stats.duplicates += report.duplicates
            for note in judgement.notes:
                event(log, "drop record", logging.INFO, topic=judgement.topic, detail=note)
            if not report.rejections:
                continue
            if any(r.index is None for r in report.rejections):
                stats.messages_rejected += 1
            first: dict[str, Rejection] = {}
            for rejection in report.rejections:
                stats.rejected_by_kind[rejection.kind] += 1
                if rejection.index is not None:
                    stats.entries_rejected += 1
                stats.last_rejection = f"{rejection.topic}: {rejection.kind}: {rejection.reason}"
                first.setdefault(rejection.kind, rejection)
            # one line per message and kind: a flood of bad entries is not a flood of lines
            counts = Counter(r.kind for r in report.rejections)
            for kind, rejection in first.items():
                fields = rejection.fields()
                if counts[kind] > 1:
                    fields["count"] = counts[kind]
                if kind in FIXES:
                    fields["fix"] = FIXES[kind]
                event(log, "rejected", logging.WARNING, **fields)

    # ---------------------------------------------------------- acknowledgements

    async def due_acks(self, now: float, *, force: bool = False) -> list[AckPublication]:
        """Acknowledgements to publish now (``.topic``, ``.payload``; QoS 1, retained).

        Each is refreshed from the sink first: with several workers, another one
        may have acknowledged more meanwhile, and a retained acknowledgement
        should not step back to what this worker knew when it stored the batch."""
        due = self.coalescer.due(now, force=force)
        if not due:
            return due
        feeds = sorted({feed for p in due for feed in p.acks})
        try:
            current = await self.sink.current_acks(feeds)
        except SinkError:
            return due  # what we knew is still true, if not the newest
        out = []
        for publication in due:
            acks = dict(publication.acks)
            for feed, (seq, raw) in current.items():
                if feed in acks and seq > acks[feed][0]:
                    acks[feed] = (seq, raw)
            out.append(AckPublication(publication.topic, acks))
        return out

    def next_ack_due(self) -> float | None:
        return self.coalescer.next_due()

    def requeue(self, publication: AckPublication) -> None:
        """A publication that could not go out (no connection): try again later."""
        self.coalescer.offer(publication.topic, publication.acks)


def admitted_authors(cloud: CloudConfig, trust: TrustStore, own: bytes) -> frozenset[bytes] | None:
    """Whose entries a cloud stores: None (``accept = "any"``) for anyone whose
    signature verifies; else the boards in the trust store (``lichen trust add``),
    ``[cloud] authors`` and the cloud itself."""
    if cloud.accept == "any":
        return None
    return trust.node_keys() | cloud.trusted_authors | {own}


def make_sink(cloud: CloudConfig, writer: LogWriter, home: Home, max_entry_size: int) -> Sink:
    """The configured sink (PostgreSQL imports psycopg only here)."""
    quota = cloud.board_quota_bytes
    if cloud.sink == "postgres":
        from .postgres_sink import PostgresSink

        own = writer.identity.node_id
        return PostgresSink(
            cloud.postgres, own.key, client_id=cloud.default_client_id(own), quota=quota
        )
    from .sqlite_sink import SqliteSink

    return SqliteSink(writer, home.database, max_entry_size=max_entry_size, quota=quota)


@contextlib.asynccontextmanager
async def sqlite_ingestor(
    path: Path,
    identity: Identity,
    *,
    trusted: Collection[bytes] | None = None,
    ack_interval: float = 0.5,
    quota: int = 0,
    workers: IngestWorkers | None = None,
) -> AsyncIterator[Ingestor]:
    """An :class:`Ingestor` over the SQLite log at ``path``, signing as ``identity``
    — the whole ingestion path without MQTT, for benchmarks and tools::

        async with sqlite_ingestor(tmp / "cloud.db", Identity.generate()) as ingestor:
            report = await ingestor.ingest("lichen/v1/f/lc1…/up", payload)
    """
    from ..node import Node
    from ..uplink.wire import MAX_PAYLOAD
    from .sqlite_sink import SqliteSink

    async with Node(path, identity, max_entry_size=MAX_PAYLOAD) as node:
        sink = SqliteSink(node.writer, path, max_entry_size=MAX_PAYLOAD, quota=quota)
        await sink.open()
        core = IngestCore(trusted=trusted, max_entry_size=MAX_PAYLOAD)
        try:
            yield Ingestor(core, sink, node.writer, ack_interval=ack_interval, workers=workers)
        finally:
            if workers is not None:
                await workers.close()
        await sink.close()


def _merged(first: StoreResult, then: StoreResult) -> StoreResult:
    """Two consecutive store results as one (later progress wins)."""
    return StoreResult([*first.outcomes, *then.outcomes], {**first.feeds, **then.feeds})
