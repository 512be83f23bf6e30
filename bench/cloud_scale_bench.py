"""``cloud-scale``: how a real ``lichen cloud`` process's ingest rate scales.

Simulated boards — distinct identities, each with its own signed feed of
reading entries, publishing its batches (up to ``PER_BATCH`` entries) on its
own up topic, the boards interleaved — go through one real Mosquitto into one
``lichen cloud`` process (``accept = "any"``, so no trust list of a thousand
boards) with the SQLite sink and with the PostgreSQL sink (a private server on
a free port, stopped by PID; skipped where PostgreSQL is not installed). Each
rate is entries per second from the first publication until the cloud's
``/health`` counts every entry stored, against the raw Ed25519 verify rate of
the same entries on one core measured in the same run. The curves:

* the number of boards: 1, 10, 100, 1000 (``--quick``: 1, 10, 100) with the
  same total of entries, on every core (ingest workers started on demand);
* one core against two: the cloud pinned with ``taskset`` (its ingest
  workers and threads with it), 100 boards (``--quick``: 10).

The publisher, Mosquitto and the cloud share the machine's cores, as they
would on a one-box install.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.identity import Identity, NodeId
from agent.store.log_store import LogStore
from agent.store.verify_workers import cores
from agent.uplink.wire import Topics, encode_entry_batch

from .common import Result
from .uplink_bench import build_log, publish, verify_rate

__all__ = ["bench_cloud_scale"]

PER_BATCH = 100  # entries per message at most (about 23 KB of readings)
SETTLE_S = 0.05


def _boards(path: Path, boards: int, total: int) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """``boards`` feeds of ``total`` entries in all: their messages, interleaved
    board by board (as boards publishing at once arrive), and every entry."""
    per_board = max(1, total // boards)
    for _ in range(boards):
        build_log(path, Identity.generate(), entries=per_board, per_entry=1, sensors=10)
    feeds: dict[bytes, list[bytes]] = {}
    with LogStore(path) as store:
        rows = store.connection.execute(
            "SELECT f.author, e.raw FROM entries e JOIN feeds f ON f.id = e.feed "
            "ORDER BY e.feed, e.seq"
        )
        for author, raw in rows:
            feeds.setdefault(bytes(author), []).append(bytes(raw))
    queues = []
    for author, raws in feeds.items():
        topic = Topics("bench", str(NodeId(author))).up
        queues.append(
            [(topic, encode_entry_batch(raws[i : i + PER_BATCH]))
             for i in range(0, len(raws), PER_BATCH)]
        )  # fmt: skip
    messages = [m for round_ in itertools.zip_longest(*queues) for m in round_ if m is not None]
    return messages, [raw for raws in feeds.values() for raw in raws]


def _ingest_rate(
    tmp: Path, name: str, broker: Any, messages: list[tuple[str, bytes]], entries: int, *,
    sink_toml: str, one_core: bool,
) -> tuple[float, dict[str, Any]]:  # fmt: skip
    """Entries per second into a fresh ``lichen cloud``; and its ingest workers' status."""
    from tests.helpers.cloud import make_cloud_home, start_cloud

    home = tmp / name
    # a group and a session of its own: no earlier run's session shares the messages
    make_cloud_home(home, f'accept = "any"\ngroup = "{name}"\nsession_expiry = 0\n{sink_toml}')
    prefix = ("taskset", "-c", "0") if one_core else ()
    with start_cloud(home, "--broker", broker.url, prefix=prefix) as cloud:
        started = time.perf_counter()
        publish(broker, messages)
        deadline = time.monotonic() + 600
        while cloud.health()["entries_stored"] < entries:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the cloud stored {cloud.health()} of {entries}")
            time.sleep(SETTLE_S)
        seconds = time.perf_counter() - started
        workers = cloud.status()["cloud"].get("ingest_workers", {})
    return entries / seconds, workers


@contextlib.contextmanager
def _postgres() -> Iterator[Any]:
    """A private PostgreSQL server, or None where none can be started."""
    import pytest

    from tests.helpers.postgres import start_postgres

    try:
        with start_postgres() as server:
            yield server
    except pytest.skip.Exception as exc:
        print(f"cloud-scale: no PostgreSQL runs: {exc}")
        yield None


def bench_cloud_scale(quick: bool) -> list[Result]:
    from tests.helpers.broker import start_broker

    counts = [1, 10, 100] if quick else [1, 10, 100, 1000]
    total = 5_000 if quick else 30_000
    pinned = 10 if quick else 100
    measured: list[tuple[str, float]] = []
    runs = itertools.count()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fleets = {n: _boards(tmp / f"boards{n}.db", n, total) for n in counts}
        limit = max(verify_rate(raws) for _, raws in fleets.values())
        with start_broker(tmp / "broker", persistence=False) as broker, _postgres() as pg:
            sinks = ["SQLite"] + ([] if pg is None else ["PostgreSQL"])
            plans = [(n, False) for n in counts] + ([(pinned, True)] if cores() > 1 else [])
            for sink, (boards, one_core) in itertools.product(sinks, plans):
                messages, raws = fleets[boards]
                run = f"scale{next(runs)}"
                toml = ""
                if sink == "PostgreSQL":
                    toml = f'sink = "postgres"\npostgres = "{pg.create_database(run)}"\n'
                rate, workers = _ingest_rate(tmp, run, broker, messages, len(raws),
                                             sink_toml=toml, one_core=one_core)  # fmt: skip
                where = "1 core" if one_core else f"{cores()} cores"
                used = workers.get("messages_checked", 0)
                name = (f"{boards} boards, {sink}, {where} ({len(messages)} msgs, "
                        f"{used} checked in workers)")  # fmt: skip
                measured.append((name, rate))
                print(f"  {name}: {rate:.0f} e/s", flush=True)
                limit = max(limit, verify_rate(raws))  # the machine's speed drifts
    reference = "raw Ed25519 verify, one core"
    return [Result("cloud-scale", name, rate, "e/s", reference, limit, "")
            for name, rate in measured]  # fmt: skip
