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

from .commands import (
    Command,
    Read,
    ReadEntries,
    ReadHashes,
    ReadHeld,
    ReadOffer,
    SaveCheckpoint,
    Send,
    Store,
    StoreResult,
    SyncLog,
    SyncStats,
    perform_read,
)
from .connection import DEFAULT_WINDOW, NEED_DATA, NeedData, SyncConnection
from .driver import SyncDriver
from .events import (
    MAX_CHANGE,
    MAX_CREDIT,
    MAX_REASON,
    MAX_SEQ,
    PROTOCOL_VERSION,
    ROLES,
    AnyMessage,
    Bye,
    ConnectionClosed,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    Event,
    Have,
    HaveEnd,
    Hello,
    Live,
    Message,
    Want,
    WantEnd,
)
from .memlog import MemoryLog
from .pacing import MAX_UNSENT, READ_CHUNK
from .plan import ALLOW_ALL, AccessPolicy, AllowAll, Holdings, RangeSet, plan_wants
from .reference import ReferenceNode, ReferenceSession, deliver, run_pair
from .rounds import MAX_RANGES
from .state import Side, State
from .wire import FrameReader, decode_message, encode_message, frame_message, max_frame_for

__all__ = [
    "ALLOW_ALL",
    "DEFAULT_WINDOW",
    "MAX_CHANGE",
    "MAX_CREDIT",
    "MAX_RANGES",
    "MAX_REASON",
    "MAX_SEQ",
    "MAX_UNSENT",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "READ_CHUNK",
    "ROLES",
    "AccessPolicy",
    "AllowAll",
    "AnyMessage",
    "Bye",
    "Command",
    "ConnectionClosed",
    "Credit",
    "Done",
    "EntryData",
    "ErrorMessage",
    "Event",
    "FrameReader",
    "Have",
    "HaveEnd",
    "Hello",
    "Holdings",
    "Live",
    "MemoryLog",
    "Message",
    "NeedData",
    "RangeSet",
    "Read",
    "ReadEntries",
    "ReadHashes",
    "ReadHeld",
    "ReadOffer",
    "ReferenceNode",
    "ReferenceSession",
    "SaveCheckpoint",
    "Send",
    "Side",
    "State",
    "Store",
    "StoreResult",
    "SyncConnection",
    "SyncDriver",
    "SyncLog",
    "SyncStats",
    "Want",
    "WantEnd",
    "decode_message",
    "deliver",
    "encode_message",
    "frame_message",
    "max_frame_for",
    "perform_read",
    "plan_wants",
    "run_pair",
]
