"""SightingFeed: a transport's sightings, fanned out to each of its readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator

from agent.link_api import PeerSighting
from agent.testing import wait_until
from agent.transport import SightingFeed


def seen(n: int) -> PeerSighting:
    return PeerSighting(address=f"tcp://10.0.0.{n}:7400", seen_at_ms=n)


async def take(stream: AsyncGenerator[PeerSighting, None], n: int) -> list[int]:
    return [(await asyncio.wait_for(anext(stream), 5)).seen_at_ms for _ in range(n)]


async def test_every_reader_gets_every_sighting_in_order() -> None:
    feed = SightingFeed()
    a, b, late = feed.stream(), feed.stream(), feed.stream()
    async with contextlib.aclosing(a), contextlib.aclosing(b), contextlib.aclosing(late):
        reading = asyncio.gather(take(a, 3), take(b, 3))
        await wait_until(lambda: feed.readers == 2, what="two readers")
        for n in (1, 2, 3):
            feed.publish(seen(n))
        assert list(await reading) == [[1, 2, 3], [1, 2, 3]]
        pending = asyncio.ensure_future(take(late, 1))  # reads from when it first ran
        await wait_until(lambda: feed.readers == 3, what="the late reader")
        feed.publish(seen(4))
        assert await pending == [4]
    assert feed.readers == 0  # closed iterators leave the feed


async def test_a_slow_reader_loses_the_oldest_never_the_newest() -> None:
    feed = SightingFeed(maxsize=4)
    slow = feed.stream()
    async with contextlib.aclosing(slow):
        first = asyncio.ensure_future(take(slow, 1))
        await wait_until(lambda: feed.readers == 1, what="the reader")
        feed.publish(seen(0))
        assert await first == [0]
        for n in range(1, 11):  # nobody reads: the queue keeps the last four
            feed.publish(seen(n))
        assert await take(slow, 4) == [7, 8, 9, 10]


async def test_known_peers_come_first_and_nothing_published_meanwhile_is_lost() -> None:
    feed = SightingFeed()

    def known() -> Iterator[PeerSighting]:
        yield seen(1)
        feed.publish(seen(3))  # noticed while the known ones are handed out
        yield seen(2)

    stream = feed.stream(known())
    async with contextlib.aclosing(stream):
        assert await take(stream, 3) == [1, 2, 3]


async def test_close_ends_every_reader_now_and_later() -> None:
    feed = SightingFeed()
    waiting = feed.stream()
    pending = asyncio.ensure_future(anext(waiting, None))
    await wait_until(lambda: feed.readers == 1, what="the reader")
    feed.close()
    assert await asyncio.wait_for(pending, 5) is None
    late = [s.seen_at_ms async for s in feed.stream([seen(9)])]
    assert late == [9]  # what it knew, then the end
    feed.close()  # idempotent
