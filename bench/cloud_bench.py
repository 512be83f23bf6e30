"""``cloud``: entries per second one cloud process ingests from a backlog, and
the CPU each entry costs.

The path is the whole ingestion without MQTT (:func:`agent.cloud.ingest.
sqlite_ingestor`): strict decode, signature, chain, exactly-once insert into
SQLite, acknowledgement. Four boards' logs of reading entries arrive as their
128 KB batches, ``GROUP`` messages per call, the rest waiting (a backlog).
Rates: with the ingest workers started on demand, as the role starts them,
inside the timing (target ≥ 1.0× on two cores), and in-process (≥ 0.5×),
against the raw Ed25519 verify rate of the same entries on one core.

CPU per entry (informational; robust where rates are not, on a shared
machine): the cloud process's (``time.process_time``, all its threads) and
its workers' (``RUSAGE_CHILDREN`` once the pool is shut down, start-up
included), against what the workers' job — :func:`~agent.store.verify_workers.
check_raws`, a strict decode and a signature check per entry — costs in this
process, measured in the same run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.identity import Identity
from agent.store.log_store import LogStore
from agent.uplink.wire import MAX_PAYLOAD, decode_entry_batch, encode_entry_batch, split_batches

from .common import Result
from .uplink_bench import build_log, verify_rate

if TYPE_CHECKING:
    from agent.cloud.ingest_workers import IngestWorkers

__all__ = ["bench_cloud", "ingest_rate", "ingest_run", "messages_of"]

GROUP = 16  # messages per ingestion call (the role takes up to 64 queued at once)


@dataclasses.dataclass(frozen=True, slots=True)
class IngestRun:
    rate: float  # entries/s
    cpu_us: float  # the cloud process's CPU per entry, all threads
    workers_cpu_us: float  # its worker processes' CPU per entry, start-up included


def messages_of(identity: Identity, raws: list[bytes]) -> list[tuple[str, bytes]]:
    """``raws`` as the board publishes them: 128 KB batches on its ``up`` topic."""
    from agent.uplink.wire import Topics

    topic = Topics("bench", str(identity.node_id)).up
    return [(topic, encode_entry_batch(batch)) for batch in split_batches(raws)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ingest_run(
    database: Path, messages: list[tuple[str, bytes]], workers: IngestWorkers | None
) -> IngestRun:
    """The cloud's ingestion path storing and acknowledging ``messages`` (into
    a new SQLite database), ``GROUP`` at a time, the rest waiting (a backlog:
    ``workers``, if given, start as the role would start them)."""
    from agent.cloud.ingest import sqlite_ingestor

    count = sum(len(decode_entry_batch(payload)) for _topic, payload in messages)
    cpu: list[float] = []

    async def ingest() -> float:
        waiting = sum(len(payload) for _, payload in messages)
        async with sqlite_ingestor(database, Identity.generate(), workers=workers) as ingestor:
            begun, cpu_begun = time.perf_counter(), time.process_time()
            for i in range(0, len(messages), GROUP):
                group = messages[i : i + GROUP]
                waiting -= sum(len(payload) for _, payload in group)
                await ingestor.ingest_many(group, waiting_bytes=waiting)
            cpu.append(time.process_time() - cpu_begun)
            return time.perf_counter() - begun

    children = _children_cpu()
    seconds = asyncio.run(ingest())  # the pool is shut down (its processes reaped) by now
    per_entry = 1e6 / count
    return IngestRun(count / seconds, cpu[0] * per_entry, (_children_cpu() - children) * per_entry)


def ingest_rate(
    database: Path, messages: list[tuple[str, bytes]], workers: IngestWorkers | None
) -> float:
    """Entries/s of :func:`ingest_run`."""
    return ingest_run(database, messages, workers).rate


def check_cpu_us(raws: list[bytes]) -> float:
    """CPU per entry of the workers' job (strict decode and signature) in this process."""
    from agent.store.verify_workers import check_raws

    started = time.process_time()
    for first in range(0, len(raws), 500):
        assert check_raws(raws[first : first + 500], MAX_PAYLOAD) is None
    return (time.process_time() - started) * 1e6 / len(raws)


def bench_cloud(quick: bool) -> list[Result]:
    from agent.cloud.ingest_workers import IngestWorkers

    boards, per_board = 4, (2_000 if quick else 10_000)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        messages: list[tuple[str, bytes]] = []
        all_raws: list[bytes] = []
        for b in range(boards):
            identity = Identity.generate()
            build_log(tmp / f"b{b}.db", identity, entries=per_board, per_entry=1, sensors=10)
            with LogStore(tmp / f"b{b}.db") as store:
                raws = [bytes(r) for (r,) in store.connection.execute("SELECT raw FROM entries")]
            all_raws += raws
            messages += messages_of(identity, raws)
        limit = verify_rate(all_raws)
        check_us = check_cpu_us(all_raws)
        in_process = ingest_run(tmp / "one.db", messages, None)
        pooled = IngestWorkers()
        with_workers = ingest_run(tmp / "workers.db", messages, pooled)
        limit = max(limit, verify_rate(all_raws))  # the machine's speed drifts
        check_us = min(check_us, check_cpu_us(all_raws))
    check = "strict decode + verify"
    return [
        Result("cloud", f"ingested entries/s (workers: {pooled.workers}, SQLite, started on "
               "demand)", with_workers.rate, "e/s", "raw Ed25519 verify, one core", limit,
               "≥ 1.0"),
        Result("cloud", "ingested entries/s (in-process, SQLite)", in_process.rate, "e/s",
               "raw Ed25519 verify, one core", limit, "≥ 0.5"),
        Result("cloud", "CPU/entry, workers (start-up included)", with_workers.workers_cpu_us,
               "µs", check, check_us, ""),
        Result("cloud", "CPU/entry, cloud process (with workers)", with_workers.cpu_us, "µs",
               check, check_us, ""),
        Result("cloud", "CPU/entry, cloud process (in-process)", in_process.cpu_us, "µs",
               check, check_us, ""),
    ]  # fmt: skip
