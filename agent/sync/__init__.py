"""The sync protocol: two nodes exchange what the other lacks of their logs.

Two sans-IO layers, h11-style (the spec is ``docs/protocol.md``):

* :class:`SyncConnection` turns bytes into events and events into bytes and
  enforces the protocol's rules;
* :class:`SyncDriver` is the caller's part: what a node offers, wants, sends
  and stores, rounds, credit and BYE. It hands out commands (send these
  bytes, store these entries, keep this checkpoint, read this) and takes the
  answers back. The node's asyncio session (``agent.mesh.SyncSession``, over
  SQLite) and :class:`ReferenceSession` (over an in-memory log) are thin
  shells that run its commands::

    driver = SyncDriver(me, peer, live=True)
    driver.start(checkpoint=since, last_change=change)
    driver.receive_data(data_from_peer)
    while (command := driver.next_command()) is not None:
        ...                       # Send, Store, SaveCheckpoint, ReadOffer …

Modules: :mod:`.events` (messages), :mod:`.wire` (frames, CBOR layouts),
:mod:`.state` (the state tables), :mod:`.rounds` (ranges, order and credit
bookkeeping), :mod:`.connection`, :mod:`.plan` (ranges, wants, the access
policy), :mod:`.commands` (what the driver asks and counts), :mod:`.driver`
and :mod:`.pacing` (its decisions, and its output paced by the link and by
credit), :mod:`.memlog` and :mod:`.reference` (the in-memory shell).
"""

from __future__ import annotations

# The package's API is its modules' APIs: each module's ``__all__`` names what
# it exports, once; a module only part of whose names are public here is
# imported by name.
from . import commands, connection, driver, events, memlog, plan, reference
from .commands import *
from .connection import *
from .driver import *
from .events import *
from .memlog import *
from .pacing import MAX_UNSENT, READ_CHUNK
from .plan import *
from .reference import *
from .rounds import MAX_RANGES
from .state import Side, State
from .wire import FrameReader, decode_message, encode_message, frame_message, max_frame_for

__all__ = [
    "MAX_RANGES",
    "MAX_UNSENT",
    "READ_CHUNK",
    "FrameReader",
    "Side",
    "State",
    "decode_message",
    "encode_message",
    "frame_message",
    "max_frame_for",
]
__all__ += commands.__all__
__all__ += connection.__all__
__all__ += driver.__all__
__all__ += events.__all__
__all__ += memlog.__all__
__all__ += plan.__all__
__all__ += reference.__all__
