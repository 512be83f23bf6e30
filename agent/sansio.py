"""The sans-IO convention every protocol core in Lichen follows (h11-style).

A *core* is a protocol's rules without I/O: no sockets, no threads, no event
loop, no clock of its own. A thin shell (asyncio, a thread, a test) moves the
bytes. Every core speaks the same three verbs:

``receive_data(data)``
    Hand the core bytes the link delivered. ``b""`` means the link ended, for
    cores whose link has an end (a stream does; a serial port's bytes do not).
``next_event()``
    The next event those bytes make, or :data:`NEED_DATA` — the one sentinel,
    defined here and shared by every core — when nothing more can be decoded
    until more bytes arrive. Call it until :data:`NEED_DATA` after each
    ``receive_data``: only then is the core's memory bounded. Once the link
    has ended a core says so with an event of its own, which may repeat (the
    sync connection's ``ConnectionClosed``, as h11's): stop there.
``data_to_send()``
    Every byte the core has queued for the peer, possibly ``b""``. What the
    caller wants said goes in through the core's own methods (``send(...)``,
    ``close()``); what a core says on its own account — a handshake reply, an
    acknowledgement — is queued as well, so after feeding it the caller always
    asks ``data_to_send()``.

A core over a byte stream that talks is a :class:`SansIOCore`; one that only
listens (the serial frame decoder) a :class:`Decoder`. A core that keeps time
takes ``now`` as an extra argument rather than reading a clock, and one over a
link of datagrams (BLE GATT values) takes and gives whole datagrams
(``data_to_send`` then returns a list); such a core is typed an
:class:`EventSource` and keeps the same verbs otherwise. The shell's loop,
for any core::

    core.receive_data(await link.read())
    while (event := core.next_event()) is not NEED_DATA:
        handle(event)                     # may call core.send(...)
    await link.write(core.data_to_send())

Where the cores live: :class:`agent.sync.SyncConnection` (the sync protocol),
:class:`agent.channel.SecureChannel` (Noise), the serial sensor's
``FrameDecoder``; ``docs/architecture.md`` ("Sans-IO cores") lists them.
"""

from __future__ import annotations

import enum
from typing import Final, Literal, Protocol, TypeVar

__all__ = ["NEED_DATA", "Decoder", "EventSource", "NeedData", "SansIOCore"]


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA` (an enum, so ``is NEED_DATA`` narrows types)."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""What ``next_event()`` returns when no whole event is buffered: feed more bytes."""

E_co = TypeVar("E_co", covariant=True)


class EventSource(Protocol[E_co]):
    """Events out: what every core has."""

    def next_event(self) -> E_co | Literal[NeedData.NEED_DATA]:
        """The next event, or :data:`NEED_DATA` until more bytes arrive."""
        ...


class Decoder(EventSource[E_co], Protocol[E_co]):
    """Bytes in, events out (a core that only listens)."""

    def receive_data(self, data: bytes, /) -> None:
        """Buffer bytes from the link (``b""``: the link ended, where it can)."""
        ...


class SansIOCore(Decoder[E_co], Protocol[E_co]):
    """Bytes in, events out, and bytes out when the caller asks."""

    def data_to_send(self) -> bytes:
        """Take every byte queued for the peer (possibly ``b""``)."""
        ...
