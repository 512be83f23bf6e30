"""A full sync over the slowest radio Lichen meets: BLE GATT between a phone and
a Pi (512-byte writes, 20 KB/s, 100 ms one way, one radio for both directions).

The time a sync takes must be what its bytes cost on the air plus a handful of
round trips, whatever the amount of data: the Noise handshake (1.5), HELLO and
the offer (0.5, both sides speak at once), wants → entries (1), the receiver's
own round with the echo that moves the provider's checkpoint (1.5), BYE (0.5).
Both limits come from the link model of this run
(:meth:`LimitedLink.exchange_time`), not from a wall-clock constant.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.link_api import Stream
from agent.transport import CountingStream, LimitedLink

from .helpers.nodes import open_node, run_sessions

RADIO = LimitedLink(mtu=512, rate=20_000.0, latency=0.1, duplex="half")
MAX_ROUND_TRIPS = 6
TICK = 0.01


async def measure_stalls(stalled: list[float]) -> None:
    """Add up how late the event loop wakes a 10 ms timer: the time this process
    could not run the link's timers (its own CPU work, or a busy machine)."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK)
        stalled[0] += max(0.0, loop.time() - before - TICK)


@pytest.mark.parametrize("entries", [1, 300])
@pytest.mark.slow
async def test_a_phone_pulls_a_pi_log_in_bytes_time_plus_few_round_trips(
    tmp_path: Path, entries: int
) -> None:
    pi = await open_node(tmp_path / "pi.db")
    phone = await open_node(tmp_path / "phone.db")
    links: list[CountingStream] = []

    def streams() -> tuple[Stream, Stream]:
        a, b = RADIO.pair(names=("ble://phone", "ble://pi"))
        links.extend([CountingStream(a), CountingStream(b)])
        return links[0], links[1]

    try:
        await pi.append(entries, size=150)
        loop = asyncio.get_running_loop()
        stalled = [0.0]
        ticker = asyncio.create_task(measure_stalls(stalled))
        started = loop.time()
        try:
            ra, rb = await run_sessions(phone, pi, streams=streams, timeout=120)
        finally:
            ticker.cancel()
        elapsed = loop.time() - started
        assert ra.ok and rb.ok and ra.clean, (ra, rb)
        assert phone.keys() == pi.keys() and len(phone.keys()) == entries
        wire = sum(link.sent for link in links)
        floor = wire / RADIO.rate
        limit = RADIO.exchange_time(wire, round_trips=MAX_ROUND_TRIPS)
        print(
            f"{entries} entries: {wire} wire bytes, {elapsed:.2f} s; air time {floor:.2f} s, "
            f"limit {limit:.2f} s ({MAX_ROUND_TRIPS} round trips), loop stalled {stalled[0]:.2f} s"
        )
        # the link model's time, plus the time the loop could not run its timers
        assert floor <= elapsed <= limit + 0.2 + stalled[0]
    finally:
        await phone.close()
        await pi.close()
