"""A flood of anonymous handshakes against a real `lichen run` listener.

Eight loopback hosts (127.0.0.2 … 127.0.0.9, ``tests/helpers/flood.py``) open
real TCP connections as fast as the node lets them and do one of three things:
half a handshake and then nothing (slow loris), garbage, or a complete Noise
handshake under a fresh identity the node does not trust. The node caps the handshakes in progress,
limits each host and the hosts it does not know, counts every refusal, and
says so in one warning line per interval. A trusted peer the node met before
(at 127.0.0.1) comes back during the flood and syncs.

Nothing here measures time or CPU: the share of a core a flood can take is
measured by ``bench`` (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers.agents import agent_state, free_port, make_nodes, node_id, start, status, stop
from .helpers.flood import Flood

pytestmark = pytest.mark.slow

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
