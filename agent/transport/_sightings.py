"""Peer sightings fanned out to every reader of a transport's ``sightings()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable

from ..link_api import PeerSighting

__all__ = ["SightingFeed"]


class SightingFeed:
    """What a transport noticed, for each iterator of :meth:`Transport.sightings`.

    The transport calls :meth:`publish` as it notices peers (an mDNS record,
    an advertisement) and returns :meth:`stream` from ``sightings()``. Each
    iterator has a queue of its own, at most ``maxsize`` deep: a reader that
    falls behind loses its oldest sightings, never the newest, and never holds
    the transport up. :meth:`close` ends every iterator, and any started later
    ends once it has given its ``first`` sightings::

        def __init__(self, config, context):
            ...
            self.feed = SightingFeed()

        def sightings(self):
            return self.feed.stream(first=self.static_peers_as_sightings())

        def _on_advert(self, advert):
            self.feed.publish(PeerSighting(address=..., seen_at_ms=...))

        async def close(self):
            self.feed.close()
    """

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self.closed = False
        self._queues: set[asyncio.Queue[PeerSighting | None]] = set()

    @property
    def readers(self) -> int:
        """The iterators running now."""
        return len(self._queues)

    def publish(self, sighting: PeerSighting) -> None:
        """Hand ``sighting`` to every iterator (dropping a slow one's oldest)."""
        for queue in self._queues:
            self._put(queue, sighting)

    def close(self) -> None:
        """End every iterator, now and later. Idempotent."""
        self.closed = True
        for queue in self._queues:
            self._put(queue, None)

    async def stream(
        self, first: Iterable[PeerSighting] = ()
    ) -> AsyncGenerator[PeerSighting, None]:
        """``first`` (read as it is yielded: peers known already), then every
        sighting published from the call on, until :meth:`close`. A generator:
        ``contextlib.aclosing`` ends it early."""
        queue: asyncio.Queue[PeerSighting | None] = asyncio.Queue(self.maxsize)
        self._queues.add(queue)  # before ``first``: nothing published meanwhile is lost
        try:
            for sighting in first:
                yield sighting
            while not self.closed:
                got = await queue.get()
                if got is None:
                    return
                yield got
        finally:
            self._queues.discard(queue)

    @staticmethod
    def _put(queue: asyncio.Queue[PeerSighting | None], item: PeerSighting | None) -> None:
        if queue.full():  # a slow reader loses the oldest, not the newest
            queue.get_nowait()
        queue.put_nowait(item)
