"""GATT connections in memory: two :class:`~lichen_ble.stream.GattStream` ends
joined by a simulated air, shaped like a :class:`~agent.transport.LimitedLink`
profile, that can lose and duplicate values as a real stack may.

It is the bearer the link core's tests and benchmarks run on without a
Bluetooth stack (the Bumble tests run the same streams over emulated
controllers). Values longer than the link's value size are dropped silently,
as Bumble's GATT server drops an over-long write without response::

    central, peripheral = await gatt_pair(BLE_GATT, loss=0.05, seed=1)
    await central.send(b"hello")
    assert await peripheral.receive() == b"hello"
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from agent.errors import TransportError
from agent.transport import LimitedLink

from .link import Role, value_size
from .stream import GattStream

__all__ = ["MemoryBearer", "gatt_pair"]


@dataclass
class _Air:
    """One direction: values leave at ``rate`` bytes/s and land ``latency`` later."""

    rate: float
    latency: float
    free_at: float = 0.0


@dataclass
class _Faults:
    loss: float
    duplicate: float
    rng: random.Random
    lost: int = 0
    duplicated: int = 0
    too_long: int = 0


@dataclass
class MemoryBearer:
    """One end of an in-memory GATT connection (a :class:`~lichen_ble.stream.GattBearer`)."""

    peer: str
    max_value: int
    air: _Air
    faults: _Faults
    stream: GattStream | None = None
    other: MemoryBearer | None = None
    connected: bool = True
    written: int = field(default=0)

    async def write(self, value: bytes) -> None:
        if not self.connected:
            raise TransportError("not connected")
        loop = asyncio.get_running_loop()
        backlog = self.air.free_at - loop.time()
        if backlog > 4 * self.max_value / self.air.rate:  # the stack's queue is full: wait
            await asyncio.sleep(backlog - 4 * self.max_value / self.air.rate)
        self.written += 1
        start = max(loop.time(), self.air.free_at)
        self.air.free_at = start + (len(value) + 4) / self.air.rate  # +4: L2CAP header
        if len(value) > self.max_value:
            self.faults.too_long += 1  # dropped without a word, as real stacks do
            return
        copies = 1
        if self.faults.rng.random() < self.faults.loss:
            self.faults.lost += 1
            copies = 0
        elif self.faults.rng.random() < self.faults.duplicate:
            self.faults.duplicated += 1
            copies = 2
        for _ in range(copies):
            loop.call_at(self.air.free_at + self.air.latency, self._deliver, bytes(value))

    def _deliver(self, value: bytes) -> None:
        other = self.other
        if self.connected and other is not None and other.stream is not None:
            other.stream.value_received(value)

    async def disconnect(self) -> None:
        self._drop("disconnected by the peer", "disconnected")

    def _drop(self, theirs: str, ours: str) -> None:
        if not self.connected:
            return
        self.connected = False
        other = self.other
        if self.stream is not None:
            self.stream.disconnected(ours)
        if other is not None and other.connected:
            other.connected = False
            loop = asyncio.get_running_loop()
            loop.call_later(self.air.latency, _lost, other, theirs)


def _lost(bearer: MemoryBearer, reason: str) -> None:
    if bearer.stream is not None:
        bearer.stream.disconnected(reason)


async def gatt_pair(
    profile: LimitedLink,
    *,
    loss: float = 0.0,
    duplicate: float = 0.0,
    seed: int = 0,
    names: tuple[str, str] = ("ble://central", "ble://peripheral"),
    **options: float,
) -> tuple[GattStream, GattStream]:
    """A connected, opened ``(central, peripheral)`` pair. ``profile.mtu`` is the
    ATT MTU's value size (``mtu − 3``, at most 512), ``profile.rate`` and
    ``profile.latency`` shape each direction; ``loss`` and ``duplicate`` are the
    chances that a value is lost or arrives twice. ``options`` go to the link cores."""
    faults = _Faults(loss, duplicate, random.Random(seed))
    size = value_size(profile.mtu + 3)
    to_p = _Air(profile.rate, profile.latency)
    to_c = _Air(profile.rate, profile.latency) if profile.duplex == "full" else to_p
    c_bearer = MemoryBearer(names[1], size, to_p, faults)
    p_bearer = MemoryBearer(names[0], size, to_c, faults)
    c_bearer.other, p_bearer.other = p_bearer, c_bearer
    central = GattStream(c_bearer, Role.CENTRAL, mtu=profile.mtu + 3, **options)
    peripheral = GattStream(p_bearer, Role.PERIPHERAL, mtu=profile.mtu + 3, **options)
    c_bearer.stream, p_bearer.stream = central, peripheral
    await asyncio.gather(central.open(), peripheral.open())
    return central, peripheral


def faults_of(stream: GattStream) -> _Faults:
    """The fault counters of a pair made by :func:`gatt_pair`."""
    bearer = stream.bearer
    assert isinstance(bearer, MemoryBearer)
    return bearer.faults
