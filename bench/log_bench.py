"""Log benchmarks: append, verify, and bytes on disk per reading.

Every number is printed next to a limit measured in the same run:

* append: cost of one durable, batched entry vs (raw Ed25519 sign + raw SQLite
  insert of the same bytes, same durability, same transaction size);
* verify: ``log verify`` entries/s vs raw Ed25519 verify/s;
* bytes per reading: database size / readings, vs the same readings in a plain
  SQLite ``(ts, value)`` table.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

from agent.clock import HybridClock
from agent.identity import Identity
from agent.readings import FieldSpec, Reading, encode_reading_batch
from agent.store.log_store import Draft, LogStore
from agent.store.verify import verify_log
from agent.store.writer import LogWriter

from .common import Result, best_rate

GROUP = 64  # rows per transaction in the raw SQLite reference
COLLECTIONS = 64  # batches per flush (one per collection)
FLUSHES = 4  # flushes in flight
ROUNDS = 3
READINGS_PER_ENTRY = 10
TEMPERATURE = {"temperature": FieldSpec(unit="°C", resolution=0.01)}


def _climate_readings(
    start_ms: int, count: int, period_ms: int, rng: random.Random
) -> list[Reading]:
    return [
        Reading(
            start_ms + i * period_ms + rng.randrange(-3, 4),
            {
                "temperature": round(
                    20 + 3 * math.sin((start_ms + i * period_ms) / 3.6e6) + rng.gauss(0, 0.05), 2
                )
            },
        )
        for i in range(count)
    ]


def _raw_sqlite_rate(path: Path, payload: bytes, count: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")

    def insert(n: int) -> None:  # timed as CPU, like the append it is compared with
        for start in range(0, n, GROUP):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO t (raw) VALUES (?)", ((payload,) for _ in range(min(GROUP, n - start)))
            )
            conn.execute("COMMIT")

    rate = best_rate(insert, count, repeats=1, cpu=True)
    conn.close()
    return rate


async def _lichen_append_rate(
    path: Path, bodies: list[dict[str, object]], count: int
) -> tuple[float, float, LogWriter]:
    """Appends as the agent makes them: each flush writes one batch per collection
    (``COLLECTIONS`` of them) in one request; ``FLUSHES`` flushes in flight."""
    writer = LogWriter(
        lambda: LogStore(path, durability="full"), Identity.generate(), HybridClock()
    )
    writer.start()
    await writer.append_many([Draft("readings/warmup", bodies[0])])
    window = asyncio.Semaphore(FLUSHES)

    async def flush(start: int) -> None:
        try:
            groups = [
                [Draft(f"readings/s{k}", bodies[(start + k) % len(bodies)])]
                for k in range(min(COLLECTIONS, count - start))
            ]
            for result in await writer.append_groups(groups):
                if isinstance(result, BaseException):
                    raise result
        finally:
            window.release()

    started, cpu_started = time.perf_counter(), time.process_time()
    tasks = []
    for start in range(0, count, COLLECTIONS):
        await window.acquire()
        tasks.append(asyncio.create_task(flush(start)))
    await asyncio.gather(*tasks)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await writer.close()
    return count / elapsed, count / cpu, writer


def bench_append_and_verify(quick: bool) -> list[Result]:
    count = 3_000 if quick else 20_000
    rng = random.Random(7)
    bodies = [
        encode_reading_batch(
            _climate_readings(1_795_000_000_000 + i * 1000, READINGS_PER_ENTRY, 100, rng),
            TEMPERATURE,
        )
        for i in range(256)
    ]
    key = SigningKey.generate()
    message = b"\x5a" * 220  # about one entry's content
    signed = key.sign(message)
    verify_key = key.verify_key

    def sign(n: int) -> None:
        for _ in range(n):
            key.sign(message)

    def verify(n: int) -> None:
        for _ in range(n):
            verify_key.verify(signed)

    # This machine's speed drifts from minute to minute (a shared host), so the
    # limits and Lichen are measured in interleaved rounds and the best of each kept.
    sign_rate = verify_rate = insert_rate = append_rate = append_cpu_rate = 0.0
    verify_rate_log = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(ROUNDS):
            sign_rate = max(sign_rate, best_rate(sign, count, repeats=1, cpu=True))
            raw = Path(tmp) / f"raw{round_}.db"
            insert_rate = max(insert_rate, _raw_sqlite_rate(raw, b"\x00" * 230, count))
            log_path = Path(tmp) / f"log{round_}.db"
            wall, cpu, writer = asyncio.run(_lichen_append_rate(log_path, bodies, count))
            append_rate, append_cpu_rate = max(append_rate, wall), max(append_cpu_rate, cpu)
            verify_rate = max(verify_rate, best_rate(verify, count, repeats=1))
            with LogStore(log_path) as store:
                entries = store.totals()[0]

                def verify_all(_n: int) -> None:
                    verify_log(store)

                verify_rate_log = max(verify_rate_log, best_rate(verify_all, entries, repeats=1))
    floor_us = 1e6 / sign_rate + 1e6 / insert_rate
    return [
        Result(
            "append",
            "CPU µs per durable batched entry",
            1e6 / append_cpu_rate,
            "µs",
            "sign+insert µs",
            floor_us,
            "≤ 1.5",
        ),
        Result(
            "append",
            "wall µs per entry (2 threads)",
            1e6 / append_rate,
            "µs",
            "sign+insert µs",
            floor_us,
            "",
        ),
        Result(
            "append", "entries/s (durability full)", append_rate, "/s", "raw sign/s", sign_rate, ""
        ),
        Result(
            "append",
            "readings/s (10 per entry)",
            append_rate * READINGS_PER_ENTRY,
            "/s",
            "raw insert rows/s",
            insert_rate,
            "",
        ),
        Result(
            "append",
            "entries per group commit (mean)",
            writer.stats.operations / max(writer.stats.commits, 1),
            "",
            "raw rows/commit",
            GROUP,
            "",
        ),
        Result(
            "verify",
            "log verify entries/s",
            verify_rate_log,
            "/s",
            "raw verify/s",
            verify_rate,
            "≥ 0.7",
        ),
    ]


def _bytes_per_reading(
    path: Path, hz: int, hours: float, fields: dict[str, FieldSpec]
) -> tuple[float, int]:
    """``hours`` of a float sensor at ``hz``, 1 s flush: (bytes per reading, readings)."""
    rng = random.Random(hz)
    wall = [1_795_000_000_000]
    clock = HybridClock(lambda: wall[0])
    identity = Identity.generate()
    seconds = int(hours * 3600)
    readings = 0
    with LogStore(path) as store:
        drafts: list[Draft] = []
        for s in range(seconds):
            wall[0] += 1000
            batch = _climate_readings(wall[0] - 1000, hz, 1000 // hz, rng)
            readings += len(batch)
            drafts.append(Draft("readings/climate", encode_reading_batch(batch, fields)))
            if len(drafts) == 600 or s == seconds - 1:
                store.append(identity, clock, drafts)
                drafts = []
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size / readings, readings


def _plain_table_bytes(path: Path, readings: int) -> float:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE readings (ts INTEGER NOT NULL, value REAL NOT NULL)")
    conn.execute("CREATE INDEX readings_ts ON readings (ts)")
    rng = random.Random(1)
    rows = (
        (1_795_000_000_000 + i * 100, round(20 + rng.gauss(0, 0.05), 2)) for i in range(readings)
    )
    conn.executemany("INSERT INTO readings VALUES (?, ?)", rows)
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    return path.stat().st_size / readings


def bench_bytes_per_reading(quick: bool) -> list[Result]:
    hours = 0.5 if quick else 6.0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        per_10hz, n = _bytes_per_reading(t / "10hz.db", 10, hours, TEMPERATURE)
        plain = _plain_table_bytes(t / "plain.db", n)
        per_10hz_float, _ = _bytes_per_reading(
            t / "10hz-f.db", 10, hours, {"temperature": FieldSpec("°C")}
        )
        per_1hz, _ = _bytes_per_reading(t / "1hz.db", 1, hours, TEMPERATURE)
    results.append(
        Result(
            "disk",
            "bytes/reading 10 Hz, 0.01 resolution",
            per_10hz,
            "B",
            "plain (ts,value)",
            plain,
            "",
        )
    )
    results.append(
        Result("disk", "bytes/reading 10 Hz vs target 32 B", per_10hz, "B", "target", 32.0, "≤ 1.0")
    )
    results.append(
        Result(
            "disk",
            "bytes/reading 10 Hz, undeclared float",
            per_10hz_float,
            "B",
            "plain (ts,value)",
            plain,
            "",
        )
    )
    results.append(
        Result("disk", "bytes/reading 1 Hz, 1 s flush", per_1hz, "B", "plain (ts,value)", plain, "")
    )
    return results
