"""What the cloud sends a board back, by whatever path reaches it.

On the board's ack topic (``PREFIX/FLEET/NODE/ack``, QoS 1, retained) the
cloud publishes its signed acknowledgements, and with them the rest of what
it has for that board: a fresh time beacon (an entry of collection ``_time``
in the cloud's own feed, ``docs/time.md``) and the commands the board has
not answered yet (:class:`~agent.cloud.orders.OpenCommands`,
``docs/commands.md``). A mule's handover of an uploaded bundle carries the
same (:meth:`BoardReplies.for_board`, handed to
:class:`~agent.cloud.bundles.BundleIntake`).

:class:`BoardReplies` holds that side of the cloud role: it publishes the
acknowledgements the :class:`~agent.cloud.ingest.Ingestor` says are due (one
loop, :meth:`run`, woken by :meth:`wake` after each stored group), and signs
beacons — at most one per ``BEACON_FRESH_S`` for all the acknowledgements
published within it, and one every ``[cloud] beacon_interval`` besides.
An acknowledgement the broker does not take is put back and sent later.
"""

from __future__ import annotations

import asyncio
import time

from ..aio import wait_event
from ..beacon import beacon_draft_fields
from ..clock import wall_ms
from ..entry import Entry
from ..node import Node
from .core import AckPublication
from .ingest import Ingestor
from .mqtt import MqttLink
from .orders import OpenCommands

__all__ = ["BEACON_FRESH_S", "BoardReplies"]

#: a beacon sent with acknowledgements is at most this old (monotonic seconds)
BEACON_FRESH_S = 1.0


class BoardReplies:
    """The cloud's replies to boards: acknowledgements published on ``link``
    as ``ingestor`` makes them due, each with what :meth:`for_board` gives.
    ``beacon_interval`` is ``[cloud] beacon_interval`` (0: no beacons)."""

    def __init__(
        self, node: Node, ingestor: Ingestor, link: MqttLink, *, beacon_interval: float
    ) -> None:
        self.node, self.ingestor, self.link = node, ingestor, link
        self.beacon_interval = beacon_interval
        self.orders = OpenCommands(node.identity.node_id.key)
        self.beacon: Entry | None = None
        self._beacon_at = float("-inf")
        self.beacons_written = 0
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Something was stored: acknowledgements may be due."""
        self._wakeup.set()

    async def run(self) -> None:
        """Publish acknowledgements as they come due, until cancelled."""
        while True:
            due = self.ingestor.next_ack_due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            if timeout is None:
                await self._wakeup.wait()
            else:
                await wait_event(self._wakeup, timeout)
            self._wakeup.clear()
            await self.flush()

    async def flush(self, *, force: bool = False) -> int:
        """Publish the acknowledgements that are due (all of them with ``force``),
        each with a fresh time beacon and the commands its board has not
        answered; keep the ones the broker did not take for later."""
        sent = 0
        for plain in await self.ingestor.due_acks(time.monotonic(), force=force):
            extra = await self.for_board(plain.topic.rsplit("/", 2)[-2])  # PREFIX/FLEET/NODE/ack
            publication = AckPublication(plain.topic, plain.acks, extra)
            if await self.link.publish(publication.topic, publication.payload, retain=True):
                sent += 1
            else:
                self.ingestor.requeue(publication)
        self.ingestor.stats.acks_published += sent
        return sent

    async def write_beacon(self) -> Entry:
        """Sign this node's wall clock into its feed (``_time``, ``docs/time.md``):
        boards without a real-time clock correct theirs by it."""
        collection, body, doc_id = beacon_draft_fields(wall_ms())
        self.beacon = await self.node.writer.append(collection, body, doc_id)
        self._beacon_at = time.monotonic()
        self.beacons_written += 1
        return self.beacon

    async def for_board(self, node: str) -> tuple[bytes, ...]:
        """What this cloud sends board ``node`` besides acknowledgements, on its
        ack topic and in a mule's handover: a fresh time beacon and the commands
        it has not answered (:class:`~agent.cloud.orders.OpenCommands`)."""
        beacon = (await self.fresh_beacon()).raw if self.beacon_interval > 0 else None
        if self.node.started:
            self.orders.refresh(self.node.reader)
        commands = self.orders.for_board(node, wall_ms())
        return (beacon, *commands) if beacon is not None else tuple(commands)

    async def fresh_beacon(self) -> Entry:
        """The latest beacon, or a new one if it is older than ``BEACON_FRESH_S``
        (one signature for every acknowledgement published within it)."""
        if self.beacon is None or time.monotonic() - self._beacon_at > BEACON_FRESH_S:
            return await self.write_beacon()
        return self.beacon
