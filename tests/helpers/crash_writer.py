"""A writer process for the crash tests: appends through the real LogWriter
(group commit) and prints ``stored SEQ HASH`` after each acknowledged append.

Usage: python -m tests.helpers.crash_writer HOME [durability]
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from agent.clock import HybridClock
from agent.home import Home
from agent.identity import load_identity
from agent.store.log_store import Draft, LogStore
from agent.store.writer import LogWriter


async def main(home: Home, durability: str) -> None:
    identity = load_identity(home.identity)
    clock = HybridClock()
    with LogStore(home.database) as reader:
        head = reader.head(identity.node_id.key)
    if head is not None:
        clock.observe(head.ts)
    writer = LogWriter(lambda: LogStore(home.database, durability=durability), identity, clock)
    writer.start()
    rng = random.Random()
    counter = 0

    async def one(i: int) -> None:
        if i % 7 == 0:
            (entry,) = await writer.append_many([Draft("config", {"i": i}, f"doc{i % 3}")])
        else:
            (entry,) = await writer.append_many(
                [Draft("readings/x", {"i": i, "pad": "p" * rng.randrange(200)})]
            )
        sys.stdout.write(f"stored {entry.seq} {entry.hash.hex()}\n")
        sys.stdout.flush()

    while True:
        burst = rng.randrange(1, 40)
        await asyncio.gather(*(one(counter + k) for k in range(burst)))
        counter += burst


if __name__ == "__main__":
    asyncio.run(main(Home(Path(sys.argv[1])), sys.argv[2] if len(sys.argv) > 2 else "normal"))
