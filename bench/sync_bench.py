"""Sync benchmarks: initial sync rate, side by side with PouchDB, wire bytes.

* ``sync``: an initial sync of N entries (100 000; 10 000 with ``--quick``)
  from a node in another process over loopback TCP, through the Noise channel,
  into a receiving process, every entry verified and stored: entries/s vs the
  raw Ed25519 verify rate of this machine (the physical limit of a verifying
  receiver on one core). Target ≥ 0.5. Then the same with the receiver (and
  so its checking workers) pinned to one core: the scaling; and on all cores
  with every entry checked in the receiver's own process (the path a small
  transfer takes). Printed for each: CPU per entry of the receiver, its
  workers and the sender, and the receiver's peak RSS (VmHWM).
* the same N documents of the same shape replicated by PouchDB between two
  PouchDB databases over HTTP on loopback: Lichen entries/s vs PouchDB docs/s
  (target ≥ 1: faster per document).
* wire bytes (both directions, everything on the socket) per raw entry byte
  (target ≤ 1.10), and the bytes a repeat sync exchanges when 1 feed of 1 000
  changed by one entry (target under 2 KB).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nacl.signing

from agent.channel import open_channel
from agent.clock import pack
from agent.entry import sign_entry
from agent.identity import Identity
from agent.mesh import SessionLog, SyncSession
from agent.store.log_store import Draft, LogStore
from agent.transport import (
    CountingStream,
    memory_stream_pair,
)

from .common import Result, best_rate
from .pouchdb_peer import PouchBenchError, replicate_with_pouchdb
from .sync_peer import open_log

ROOT = Path(__file__).resolve().parent.parent

BODY_BYTES = 200
REPEAT_FEEDS = 1000


def reading_body(i: int) -> dict[str, Any]:
    """About 200 bytes of JSON: the document PouchDB replicates has this shape too."""
    return {
        "collection": "readings/climate",
        "ts": 1_700_000_000_000 + i * 1000,
        "readings": [{"s": f"t{k}", "v": round(20 + (i * 7 + k) % 100 / 10, 1)} for k in range(8)],
    }


def raw_verify_rate() -> float:
    key = nacl.signing.SigningKey(bytes(range(32)))
    signed = key.sign(b"x" * 200)
    verify_key = key.verify_key

    def verify(n: int) -> None:
        for _ in range(n):
            verify_key.verify(signed)

    return best_rate(verify, 5000)


async def _fill(path: Path, identity: Identity, n: int) -> None:
    writer, reader = await open_log(path, identity)
    for start in range(0, n, 1000):
        await writer.append_many(
            [Draft("readings/climate", reading_body(i)) for i in range(start, min(n, start + 1000))]
        )
    await writer.close()
    reader.close()


def _initial_sync(work: Path, n: int, runs: list[str]) -> list[dict[str, float]]:
    """Initial syncs of ``n`` entries over loopback TCP from a node in another
    process, into a fresh receiving process for each of ``runs`` (its options)."""
    provider, receiver = Identity(bytes([7]) * 32), Identity(bytes([8]) * 32)
    asyncio.run(_fill(work / "provider.db", provider, n))
    peer = subprocess.Popen(
        [sys.executable, "-m", "bench.sync_peer", "--db", str(work / "provider.db"),
         "--seed", provider.seed.hex()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    results = []
    try:
        assert peer.stdout is not None
        port = json.loads(peer.stdout.readline())["port"]
        for index, options in enumerate(runs):
            db = work / f"receiver{index}.db"
            pulled = subprocess.run(
                [sys.executable, "-m", "bench.sync_peer", "--db", str(db),
                 "--seed", receiver.seed.hex(), "--pull", str(port), *options.split()],
                capture_output=True, text=True, cwd=ROOT, check=False,
            )  # fmt: skip
            if pulled.returncode != 0:
                raise RuntimeError(f"the receiving process failed: {pulled.stderr[-2000:]}")
            sender = json.loads(peer.stdout.readline())  # its report of that session
            with LogStore(db) as store:
                held = store.totals()[0]
            if held != n:
                raise RuntimeError(f"the receiver holds {held} entries, not {n}")
            results.append(
                json.loads(pulled.stdout.splitlines()[-1]) | {"sender_cpu_s": sender["cpu_s"]}
            )
    finally:
        if peer.stdin:
            peer.stdin.close()
        try:
            peer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            peer.kill()
    return results


async def _repeat_sync_bytes(work: Path) -> int:
    """Bytes (both ways) of a repeat sync after 1 of REPEAT_FEEDS feeds grew by one entry."""
    a_id, b_id = Identity(bytes([9]) * 32), Identity(bytes([10]) * 32)
    a, a_reader = await open_log(work / "a.db", a_id)
    b, b_reader = await open_log(work / "b.db", b_id)
    authors = [Identity((i + 1000).to_bytes(32, "big")) for i in range(REPEAT_FEEDS)]
    heads = []
    for author in authors:
        entry = sign_entry(author, seq=1, prev=None, ts=pack(1), collection="c", body={"v": 1})
        heads.append(entry)
    await a.receive_many(heads)

    async def session() -> int:
        left, right = memory_stream_pair()
        counted = CountingStream(left)
        ca, cb = await asyncio.gather(
            open_channel(counted, a_id, initiator=True, trust=lambda _p: None),
            open_channel(right, b_id, initiator=False, trust=lambda _p: None),
        )
        ra, rb = await asyncio.gather(
            SyncSession(ca, SessionLog(a_reader, a), a_id.node_id).run(),
            SyncSession(cb, SessionLog(b_reader, b), b_id.node_id).run(),
        )
        if ra.error or rb.error:
            raise RuntimeError(f"the benchmark sync failed: {ra.error or rb.error}")
        return counted.sent + counted.received

    await session()  # the first sync: everything
    middle = REPEAT_FEEDS // 2
    changed = authors[middle]
    grown = sign_entry(
        changed, seq=2, prev=heads[middle].hash, ts=pack(2), collection="c", body={"v": 2}
    )
    await a.receive_many([grown])
    repeat = await session()
    if b_reader.get(changed.node_id.key, 2) is None:
        raise RuntimeError("the repeat sync did not deliver the new entry")
    for writer, reader in ((a, a_reader), (b, b_reader)):
        await writer.close()
        reader.close()
    return repeat


def bench_sync(quick: bool) -> list[Result]:
    n = 10_000 if quick else 100_000
    verify_rate = raw_verify_rate()
    with tempfile.TemporaryDirectory(prefix="lichen-bench-sync-") as tmp:
        work = Path(tmp)
        both, one, alone = _initial_sync(work, n, ["", "--cores 0", "--no-workers"])
        rate, one_rate, alone_rate = (n / run["seconds"] for run in (both, one, alone))
        raw = both["raw"]
        for name, run in (("workers", both), ("1 core", one), ("in-process", alone)):
            per = {key: run[key] / n * 1e6 for key in ("cpu_s", "workers_cpu_s", "sender_cpu_s")}
            print(
                f"sync: {name}: {n / run['seconds']:.0f} entries/s; CPU per entry: receiver "
                f"{per['cpu_s']:.0f} µs, its workers {per['workers_cpu_s']:.0f} µs, sender "
                f"{per['sender_cpu_s']:.0f} µs; {run['checked_apart']:.0f} checked in workers; "
                f"peak RSS {run['hwm_kib'] / 1024:.1f} MiB (largest worker "
                f"{run['worker_hwm_kib'] / 1024:.1f} MiB)",
                flush=True,
            )
        repeat = asyncio.run(_repeat_sync_bytes(work))
        results = [
            Result("sync", f"initial sync entries/s ({n})", rate, "/s", "raw verify/s",
                   verify_rate, "≥ 0.5"),
            Result("sync", "initial sync, receiver on all cores", rate, "/s",
                   "on 1 core /s", one_rate, ""),
            Result("sync", "initial sync, checked in workers", rate, "/s",
                   "in-process /s", alone_rate, ""),
            Result("sync", "receiver peak RSS, all cores", both["hwm_kib"] / 1024, "MiB",
                   "on 1 core MiB", one["hwm_kib"] / 1024, ""),
            Result("sync", "wire bytes per raw entry byte", both["wire"] / raw, "B", "raw bytes",
                   1.0, "≤ 1.10"),
            Result("sync", f"repeat sync, 1 of {REPEAT_FEEDS} feeds", repeat, "B",
                   "2 KB", 2048.0, "≤ 1.0"),
        ]  # fmt: skip
        try:
            pouch = replicate_with_pouchdb(n, BODY_BYTES, work / "pouchdb")
        except PouchBenchError as exc:
            print(f"sync: PouchDB side skipped: {exc}", flush=True)
        else:
            results.append(
                Result("sync", f"entries/s vs PouchDB docs/s ({n})", rate, "/s",
                       "PouchDB docs/s", pouch.docs_per_s, "≥ 1.0")
            )  # fmt: skip
        print(f"sync: {n} entries, {raw / n:.0f} raw bytes per entry", flush=True)
    return results
