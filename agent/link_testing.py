"""Testing transport and uplink plugins: the contexts the agent hands them, faked.

:class:`FakeTransportContext` is the :class:`~agent.link_api.TransportContext`
a transport gets (its node id, the heads digest to advertise); change
:attr:`~FakeTransportContext.digest` to play a node whose log grew.
:class:`FakeUplinkContext` is the :class:`~agent.link_api.UplinkContext` an
uplink gets, over real signed entries of its own node held in memory: the
outbox passes, the acknowledgements, the link state and the readings behave
as the agent's do, and what the plugin did is recorded. Both are exported by
:mod:`agent.testing`::

    from agent.testing import FakeUplinkContext, wait_until

    async def test_my_uplink_delivers_everything():
        context = FakeUplinkContext()
        context.append(20)                           # 20 signed entries to forward
        uplink = MyUplink(MyUplink.Config(name="cloud"), context)
        task = asyncio.create_task(uplink.run())
        cloud_got = ...                              # whatever reaches your cloud
        ...                                          # acknowledge: context.acknowledge(key)
        await wait_until(lambda: context.acked == set(context.held()), what="every entry")
        task.cancel()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from .clock import HybridClock
from .entry import Entry, decode_entry, sign_entry, verify_entry
from .identity import Identity
from .link_api import SensorReading
from .uplink.wire import ACKS_COLLECTION, parse_ack_body, split_batches

__all__ = ["FakeTransportContext", "FakeUplinkContext", "wait_until"]

Key = tuple[bytes, int]
"""An entry's ``(author key, seq)``."""


async def wait_until(
    condition: Callable[[], object], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Wait until ``condition()`` is true, checking every 20 ms; AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class FakeTransportContext:
    """What the agent gives a transport (:class:`~agent.link_api.TransportContext`).

    ``node_id`` defaults to a fresh node's; :attr:`digest` is what
    :meth:`heads_digest` answers (set it to play new entries), and
    :attr:`digest_reads` counts the calls (a transport rate-limits them).
    """

    def __init__(
        self, node_id: str | None = None, *, digest: str = "00" * 8, name: str = "test"
    ) -> None:
        self.name = name
        self.log = logging.getLogger(f"lichen.transport.{name}")
        self._node_id = node_id or str(Identity.generate().node_id)
        self.digest = digest
        self.digest_reads = 0

    @property
    def node_id(self) -> str:
        return self._node_id

    def heads_digest(self) -> str:
        self.digest_reads += 1
        return self.digest


class FakeUplinkContext:
    """What the agent gives an uplink (:class:`~agent.link_api.UplinkContext`), over
    entries held in memory.

    :meth:`append` signs new entries of this node's feed. Each :meth:`outbox`
    call is a fresh pass: every entry not acknowledged comes once, in batches
    within ``max_bytes``, and again after ``resend_after`` seconds if still not
    acknowledged; the pass waits while there is nothing to send. An entry is
    acknowledged when a test adds its key to :attr:`acked` (or calls
    :meth:`acknowledge`), or when :meth:`receive` is handed a cloud's signed
    ``_acks`` entry covering it — from any cloud, or only from ``clouds`` (node
    keys) if given, as ``[retention] ack_from`` does. Recorded: :attr:`received`
    (each ``receive`` call's entries), :attr:`states` (each ``set_connected``),
    :attr:`passes`. :meth:`add_reading` feeds :meth:`readings`.
    """

    def __init__(
        self,
        identity: Identity | None = None,
        *,
        resend_after: float = 0.5,
        name: str = "cloud",
        clouds: Sequence[bytes] | None = None,
        node_name: str = "",
    ) -> None:
        self.identity = identity or Identity.generate()
        self.name = name
        self.node_name = node_name
        self.log = logging.getLogger(f"lichen.uplink.{name}")
        self.resend_after = resend_after
        self.clouds = None if clouds is None else frozenset(clouds)
        self.acked: set[Key] = set()
        self.received: list[list[bytes]] = []
        self.states: list[tuple[bool, str | None]] = []
        self.passes = 0
        self._entries: dict[Key, bytes] = {}
        self._last: Entry | None = None
        self._clock = HybridClock()
        self._readings: asyncio.Queue[SensorReading] = asyncio.Queue()

    @property
    def node_id(self) -> str:
        return str(self.identity.node_id)

    @property
    def connected(self) -> bool:
        """The last state the uplink reported."""
        return bool(self.states) and self.states[-1][0]

    # ------------------------------------------------------------ the test's side

    def append(self, count: int = 1, *, collection: str = "readings/test", size: int = 40) -> None:
        """Sign ``count`` more entries of this node's feed (bodies of about ``size`` bytes)."""
        for _ in range(count):
            last = self._last
            seq = last.seq + 1 if last else 1
            self._last = sign_entry(
                self.identity,
                seq=seq,
                prev=last.hash if last else None,
                ts=self._clock.now(),
                collection=collection,
                body={"i": seq, "pad": "x" * size},
            )
            self._entries[(self._last.author, seq)] = self._last.raw

    def held(self) -> dict[Key, bytes]:
        """Every entry held, by key: what the outbox carries until acknowledged."""
        return dict(self._entries)

    def acknowledge(self, *keys: Key) -> None:
        """The cloud holds these entries: no pass sends them again."""
        self.acked.update(keys)

    def add_reading(self, reading: SensorReading) -> None:
        """A reading of this node's sensors, for :meth:`readings`."""
        self._readings.put_nowait(reading)

    # ---------------------------------------------------------- the plugin's side

    async def outbox(self, max_bytes: int) -> AsyncIterator[Sequence[bytes]]:
        self.passes += 1
        sent: dict[Key, float] = {}
        while True:
            now = time.monotonic()
            due = {
                raw: key
                for key, raw in self._entries.items()
                if key not in self.acked and now - sent.get(key, -1e9) >= self.resend_after
            }
            if not due:
                await asyncio.sleep(0.02)
                continue
            for batch in split_batches(due, max_bytes):
                for raw in batch:
                    sent[due[raw]] = time.monotonic()
                yield batch

    async def receive(self, entries: Sequence[bytes]) -> int:
        self.received.append([bytes(e) for e in entries])
        good = 0
        for raw in entries:
            try:
                entry = decode_entry(bytes(raw))
                verify_entry(entry)
                if entry.collection != ACKS_COLLECTION or not self._from_a_cloud(entry):
                    raise ValueError(f"{entry.where} is not an acknowledgement of a cloud")
                upto = parse_ack_body(entry.body)
            except ValueError as exc:
                self.log.warning("entry from the ack topic refused: %s", exc)
                continue
            good += 1
            if entry.doc_id == self.node_id:
                own = self.identity.node_id.key
                self.acked.update((own, seq) for seq in range(1, upto + 1))
        return good

    def _from_a_cloud(self, entry: Entry) -> bool:
        return self.clouds is None or entry.author in self.clouds

    async def readings(self) -> AsyncIterator[SensorReading]:
        while True:
            yield await self._readings.get()

    def set_connected(self, connected: bool, detail: str | None = None) -> None:
        self.states.append((connected, detail))
