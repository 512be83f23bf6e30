"""A flood of anonymous handshakes against a real `lichen run` listener.

Eight loopback hosts (127.0.0.2 … 127.0.0.9) open real TCP connections as fast
as the node lets them and do one of three things: half a handshake and then
nothing (slow loris), garbage, or a complete Noise handshake under a fresh
identity the node does not trust. The node caps the handshakes in progress,
limits each host and the hosts it does not know, counts every refusal, and
says so in one warning line per interval. A trusted peer the node met before
(at 127.0.0.1) comes back during the flood and syncs.

Nothing here measures time or CPU: the share of a core a flood can take is
measured by ``bench`` (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.channel import open_channel
from agent.identity import Identity
from agent.transport import AsyncioStream

from .helpers.agents import agent_state, free_port, make_nodes, node_id, start, status, stop

pytestmark = pytest.mark.slow

FLOOD_HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]
LIMITS = (
    "\n[mesh]\nmax_handshakes = 4\nhandshake_rate = 8.0\nhost_handshake_rate = 1.0\n"
    "handshake_timeout = 3.0\n"
    '\n[[transports.tcp]]\nname = "lan"\nadvertise = false\nbrowse = false\n'
)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


class Flood:
    """Workers per host, each looping over the three kinds of caller."""

    def __init__(self, port: int, workers_per_host: int = 3) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self._tasks = [
            asyncio.create_task(self._worker(host, n))
            for host in FLOOD_HOSTS
            for n in range(workers_per_host)
        ]

    async def _worker(self, host: str, n: int) -> None:
        kinds = itertools.cycle([self._partial, self._garbage, self._full])
        for _ in range(n):
            next(kinds)
        while True:
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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await check()):
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)
    return value


async def test_a_flood_of_anonymous_handshakes_is_capped_and_a_trusted_peer_still_syncs(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    node, peer = make_nodes(tmp_path, 2)
    with (node / "lichen.toml").open("a") as config:
        config.write(LIMITS)
    port = free_port()
    running.append(start(node, "--listen", f"tcp://127.0.0.1:{port}"))
    peer_id = node_id(peer)

    async def held() -> int:
        feeds = (await asyncio.to_thread(status, node))["feeds"]
        return next((f["head_seq"] for f in feeds if f["author"] == peer_id), 0)

    async def admission() -> dict[str, int]:
        state = agent_state(node) or {}
        return dict(((state.get("sync") or {}).get("admission")) or {})

    # the peer meets the node once before the flood: its host is known from then on
    first = start(peer, "--peer", f"tcp://127.0.0.1:{port}")
    running.append(first)
    before = await wait("the peer's first sync", held)
    stop([first])

    flood = Flood(port)
    try:
        counters = await wait("every kind of refusal", lambda: _refused_all_ways(admission))
        attempts_before = flood.attempts
        running.append(start(peer, "--peer", f"tcp://127.0.0.1:{port}"))
        after = await wait("the peer's entries during the flood",
                           lambda: _more_than(held, before + 3), timeout=90)  # fmt: skip
        counters = await admission()
        assert flood.attempts > attempts_before, "the flood stopped"
    finally:
        await flood.stop()
    assert after > before + 3
    # the cap was reached, never passed; slow callers gave their slot up to others
    assert counters["peak"] == 4 and counters["in_progress"] <= 4, counters
    assert counters["evicted"] > 0, counters
    assert counters["admitted"] > 0 and counters["known_hosts"] >= 1, counters
    kinds = {outcome.split()[0] for outcome in flood.outcomes}
    assert kinds == {"_partial", "_garbage", "_full"}, flood.outcomes
    assert flood.outcomes["_full"] == 0, flood.outcomes  # no stranger's channel stayed open
    log = (node / "agent.log").read_text()
    opened = [line for line in log.splitlines() if 'msg="session open"' in line]
    assert opened and all(f"peer={peer_id}" in line for line in opened), opened
    assert "incoming connections refused (too many handshakes)" in log
    assert "Traceback" not in log


async def _refused_all_ways(admission: Any) -> dict[str, int] | None:
    counters: dict[str, int] = await admission()
    kinds = ("refused_busy", "refused_rate", "refused_host")
    return counters if counters and all(counters.get(k, 0) > 0 for k in kinds) else None


async def _more_than(held: Any, seq: int) -> int | None:
    value: int = await held()
    return value if value > seq else None
