"""An anonymous handshake flood from several loopback hosts, for tests and the bench.

Each host (127.0.0.2 … by default) runs a few workers; each worker loops over
three kinds of caller: half a first handshake message and then nothing (a slow
loris), garbage, and a complete Noise handshake under a fresh identity the node
does not trust. ``outcomes`` counts how each attempt ended.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import Sequence

from agent.channel import open_channel
from agent.identity import Identity
from agent.transport import AsyncioStream

__all__ = ["FLOOD_HOSTS", "Flood"]

FLOOD_HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]


class Flood:
    """Workers per host, each looping over the three kinds of caller."""

    def __init__(
        self, port: int, workers_per_host: int = 3, hosts: Sequence[str] = FLOOD_HOSTS
    ) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._worker(host, n))
            for host in hosts
            for n in range(workers_per_host)
        ]

    async def _worker(self, host: str, n: int) -> None:
        kinds = itertools.cycle([self._partial, self._garbage, self._full])
        for _ in range(n):
            next(kinds)
        while not self._stopping:
            kind = next(kinds)
            try:
                async with asyncio.timeout(10):
                    await kind(host)
                self.outcomes[kind.__name__] += 1
            except (OSError, TimeoutError) as exc:
                self.outcomes[f"{kind.__name__} {type(exc).__name__}"] += 1
            except Exception as exc:  # the node refused the handshake, as it should
                self.outcomes[f"{kind.__name__} {type(exc).__name__}"] += 1
            await asyncio.sleep(0)

    async def _connect(self, host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(host, 0))

    async def _partial(self, host: str) -> None:
        reader, writer = await self._connect(host)
        writer.write(b"\x00\x20" + os.urandom(16))  # half of a 32-byte first message
        await writer.drain()
        await reader.read()  # nothing more: wait for the node to give up
        writer.close()

    async def _garbage(self, host: str) -> None:
        reader, writer = await self._connect(host)
        writer.write(os.urandom(300))
        await writer.drain()
        await reader.read()
        writer.close()

    async def _full(self, host: str) -> None:
        reader, writer = await self._connect(host)
        stream = AsyncioStream(reader, writer, peer=f"tcp://127.0.0.1:{self.port}")
        channel = await open_channel(
            stream, Identity.generate(), initiator=True, trust=lambda _peer: None
        )  # complete on this side; the node refuses the stranger on its own
        await channel.receive()
        await channel.close()

    @property
    def attempts(self) -> int:
        return sum(self.outcomes.values())

    async def stop(self) -> None:
        # A cancellation that meets an expiring asyncio.timeout() at the same
        # moment is turned into TimeoutError (Python 3.11) and swallowed by the
        # worker's loop: the flag ends the loop whatever happens to the cancel.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        _, pending = await asyncio.wait(self._tasks, timeout=30)
        assert not pending, f"{len(pending)} flood workers did not stop"
