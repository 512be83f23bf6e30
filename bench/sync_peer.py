"""The far end of the sync benchmark, as its own process (its own core).

``python -m bench.sync_peer --db PATH --seed HEX`` opens the log at PATH as
the node with that identity seed, listens on a free 127.0.0.1 port, prints
``{"port": N}``, and serves one sync session per connection (printing each
session's report as a JSON line) until its stdin closes.

With ``--pull PORT`` it is the receiving end instead: one initial sync from
the node at that port into the log at PATH, on the cores ``--cores`` names
(all by default; ``--no-workers``: every entry checked in-process); it
prints the session's seconds, wire and raw bytes, its own peak RSS and that
of the largest worker process it started (KiB), and the CPU seconds of both.

Each checking worker the receiving end starts imports this module again (as
``__mp_main__``, the way ``spawn`` works), so it imports the agent only where
it is used: as light to import as the ``lichen`` console script, whose
workers the benchmark stands for.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a checking worker imports this module again
    from agent.identity import Identity
    from agent.store.log_store import LogStore
    from agent.store.writer import LogWriter


async def open_log(path: Path, identity: Identity) -> tuple[LogWriter, LogStore]:
    import asyncio

    from agent.clock import HybridClock
    from agent.store.log_store import LogStore
    from agent.store.writer import LogWriter

    writer = LogWriter(lambda: LogStore(path), identity, HybridClock())
    await asyncio.get_running_loop().run_in_executor(None, writer.start)
    return writer, LogStore(path)


async def pull(path: Path, identity: Identity, port: int) -> dict[str, float]:
    """One sync from the node at ``port`` into the log at ``path``: what it took."""
    import asyncio

    from agent.channel import open_channel
    from agent.mesh import SessionLog, SyncSession
    from agent.transport import AsyncioStream, CountingStream, tune_tcp_socket

    writer, reader = await open_log(path, identity)
    started = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    tune_tcp_socket(w.get_extra_info("socket"))
    stream = CountingStream(AsyncioStream(r, w))
    channel = await open_channel(stream, identity, initiator=True, trust=lambda _peer: None)
    report = await SyncSession(channel, SessionLog(reader, writer), identity.node_id).run()
    seconds = time.perf_counter() - started
    if report.error:
        raise RuntimeError(f"the benchmark sync failed: {report.error}")
    (raw_bytes,) = reader.connection.execute("SELECT sum(length(raw)) FROM entries").fetchone()
    await writer.close()
    reader.close()
    return {
        "seconds": seconds,
        "wire": stream.sent + stream.received,
        "raw": int(raw_bytes),
        "checked_apart": report.entries_checked_apart,
        "hwm_kib": _hwm_kib(),
        "worker_hwm_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "cpu_s": _cpu(resource.RUSAGE_SELF),
        "workers_cpu_s": _cpu(resource.RUSAGE_CHILDREN),
    }


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def serve(db: Path, seed: bytes) -> None:
    import asyncio

    from agent.channel import open_channel
    from agent.clock import HybridClock
    from agent.identity import Identity
    from agent.mesh import SessionLog, SyncSession
    from agent.store.log_store import LogStore
    from agent.store.writer import LogWriter
    from agent.transport import AsyncioStream, tune_tcp_socket

    identity = Identity(seed)
    writer = LogWriter(lambda: LogStore(db), identity, HybridClock())
    writer.start()
    reader = LogStore(db)

    async def on_connection(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tune_tcp_socket(w.get_extra_info("socket"))
        channel = await open_channel(
            AsyncioStream(r, w), identity, initiator=False, trust=lambda _peer: None
        )
        session = SyncSession(channel, SessionLog(reader, writer), identity.node_id)
        cpu = _cpu(resource.RUSAGE_SELF)
        report = await session.run()
        cpu = _cpu(resource.RUSAGE_SELF) - cpu
        print(json.dumps({"sent": report.entries_sent, "error": report.error, "cpu_s": cpu}),
              flush=True)  # fmt: skip

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    await writer.close()
    reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_peer")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--seed", required=True, help="the identity seed, 64 hex digits")
    parser.add_argument("--pull", type=int, help="sync from the node at this port instead")
    parser.add_argument("--cores", help="run on these cores only, e.g. 0 or 0,1")
    parser.add_argument("--no-workers", action="store_true", help="check every entry in-process")
    args = parser.parse_args()
    import asyncio

    from agent.identity import Identity
    from agent.store import verify_workers

    if args.cores:
        os.sched_setaffinity(0, {int(core) for core in args.cores.split(",")})
    if args.no_workers:
        verify_workers.MIN_ENTRIES = sys.maxsize
    if args.pull is not None:
        result = asyncio.run(pull(args.db, Identity(bytes.fromhex(args.seed)), args.pull))
        print(json.dumps(result), flush=True)
        return
    asyncio.run(serve(args.db, bytes.fromhex(args.seed)))


if __name__ == "__main__":
    main()
