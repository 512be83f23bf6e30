"""The far end of the sync benchmark, as its own process (its own core).

``python -m bench.sync_peer --db PATH --seed HEX`` opens the log at PATH as
the node with that identity seed, listens on a free 127.0.0.1 port, prints
``{"port": N}``, and serves one sync session per connection (printing each
session's report as a JSON line) until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from agent.channel import open_channel
from agent.clock import HybridClock
from agent.identity import Identity
from agent.mesh import SessionLog, SyncSession
from agent.store.log_store import LogStore
from agent.store.writer import LogWriter
from agent.transport import AsyncioStream, tune_tcp_socket


async def serve(db: Path, seed: bytes) -> None:
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
        report = await session.run()
        print(json.dumps({"sent": report.entries_sent, "error": report.error}), flush=True)

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
    args = parser.parse_args()
    asyncio.run(serve(args.db, bytes.fromhex(args.seed)))


if __name__ == "__main__":
    main()
