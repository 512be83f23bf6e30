"""A slow radio in memory: a stream pair shaped by write size, rate and latency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ._memory import MemoryStream, _Air, _Pipe

__all__ = ["BLE_GATT", "LimitedLink"]


@dataclass(frozen=True)
class LimitedLink:
    """The shape of a slow link, and a factory of in-memory stream pairs with it.

    Each direction carries writes of at most ``mtu`` bytes (a larger
    ``send`` is cut into ``mtu``-sized frames, each travelling whole), at
    ``rate`` bytes per second, each arriving ``latency`` seconds after it
    left the air. With ``duplex="full"`` the two directions have their own
    air time; with ``"half"`` they share it, as a single radio does.
    ``buffer`` bounds the bytes in flight plus unread, per direction (the
    back-pressure). Frames are scheduled on absolute times, so a transfer
    takes what :meth:`transfer_time` says, to within the event loop's timer
    accuracy (about a millisecond), however it is cut into sends.

    The model is the data path only: no per-frame header, no loss, and the
    flow-control credit goes back instantly.

    A phone syncing with a Pi over BLE GATT::

        phone, pi = BLE_GATT.pair(names=("ble://phone", "ble://pi"))
        started = loop.time()
        ...  # run a sync of N bytes in R request-response round trips
        assert elapsed == pytest.approx(BLE_GATT.exchange_time(N, round_trips=R), rel=0.1)
    """

    mtu: int = 512
    rate: float = 20_000.0
    latency: float = 0.1
    buffer: int = 65536
    duplex: Literal["full", "half"] = "full"

    def __post_init__(self) -> None:
        if self.mtu < 1:
            raise ValueError(f"mtu must be at least 1 byte, not {self.mtu}")
        if not self.rate > 0 or math.isinf(self.rate):
            raise ValueError(f"rate must be a positive number of bytes per second, not {self.rate}")
        if self.latency < 0:
            raise ValueError(f"latency must not be negative, not {self.latency}")
        if self.buffer < self.mtu:
            raise ValueError(f"buffer ({self.buffer}) must hold at least one mtu ({self.mtu})")
        if self.duplex not in ("full", "half"):
            raise ValueError(f'duplex must be "full" or "half", not {self.duplex!r}')

    def pair(
        self, *, names: tuple[str, str] = ("limited://a", "limited://b")
    ) -> tuple[MemoryStream, MemoryStream]:
        """Two connected streams shaped like this link; ``a.peer == names[1]``.

        They behave as :func:`~agent.transport.memory_stream_pair`'s
        (half-close, close, :meth:`~agent.transport.MemoryStream.abort`) and
        their ``max_frame_hint`` is ``mtu``."""
        shared = _Air() if self.duplex == "half" else None

        def pipe() -> _Pipe:
            return _Pipe(
                capacity=self.buffer,
                mtu=self.mtu,
                rate=self.rate,
                latency=self.latency,
                air=shared,
            )

        a_to_b, b_to_a = pipe(), pipe()
        a = MemoryStream(a_to_b, b_to_a, peer=names[1], max_frame_hint=self.mtu)
        b = MemoryStream(b_to_a, a_to_b, peer=names[0], max_frame_hint=self.mtu)
        return a, b

    def frames(self, nbytes: int) -> int:
        """How many frames ``nbytes`` sent in one ``send`` travel as."""
        return math.ceil(nbytes / self.mtu)

    def transfer_time(self, nbytes: int) -> float:
        """Seconds from the start of a ``send`` of ``nbytes`` until the last byte
        can be received, on an idle link: ``nbytes / rate + latency``."""
        return nbytes / self.rate + self.latency

    def exchange_time(self, nbytes: int, *, round_trips: int) -> float:
        """Seconds for a conversation of ``round_trips`` request-response turns
        carrying ``nbytes`` in all (both directions), each turn waiting for the
        previous answer: ``nbytes / rate + 2 × latency × round_trips``.

        It is exact for strictly alternating turns on a ``"half"`` link and
        for one-way bulk transfer; on a ``"full"`` link traffic that overlaps in
        both directions takes less."""
        return nbytes / self.rate + 2 * self.latency * round_trips


#: BLE GATT between a phone and a Pi: 512-byte writes, 20 KB/s, 100 ms one way
BLE_GATT = LimitedLink(mtu=512, rate=20_000.0, latency=0.1)
