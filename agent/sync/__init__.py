"""The sync protocol: two nodes exchange what the other lacks of their logs.

A sans-IO core, h11-style (the spec is ``docs/protocol.md``): a
:class:`SyncConnection` turns bytes into events and events into bytes and
enforces the protocol's rules; the caller decides what to offer, want, send
and store, with the pure helpers in :mod:`.plan`. :mod:`.reference` is a
complete caller over an in-memory log — the model for the asyncio shell::

    conn = SyncConnection()
    out = conn.send(Hello(node=me, role="board", since=checkpoint, change=last_change))
    out += conn.send(DEFAULT_WINDOW)
    conn.receive_data(data_from_peer)
    for event in conn.events():
        ...

Modules: :mod:`.events` (messages), :mod:`.wire` (frames, CBOR layouts),
:mod:`.state` (the state tables), :mod:`.rounds` (ranges, order and credit
bookkeeping), :mod:`.connection`, :mod:`.plan` (offer/want/send planning,
access hooks), :mod:`.memlog` and :mod:`.reference` (the in-memory model).
"""

from __future__ import annotations

from .connection import DEFAULT_WINDOW, NEED_DATA, NeedData, SyncConnection
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
from .plan import (
    ALLOW_ALL,
    AccessPolicy,
    AllowAll,
    FeedSummary,
    HeldRanges,
    Holdings,
    RangeSet,
    offer_from_changes,
    offer_from_heads,
    plan_wants,
    wanted_entries,
)
from .reference import ReferenceNode, ReferenceSession, SessionStats, deliver, run_pair
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
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "ROLES",
    "AccessPolicy",
    "AllowAll",
    "AnyMessage",
    "Bye",
    "ConnectionClosed",
    "Credit",
    "Done",
    "EntryData",
    "ErrorMessage",
    "Event",
    "FeedSummary",
    "FrameReader",
    "Have",
    "HaveEnd",
    "HeldRanges",
    "Hello",
    "Holdings",
    "Live",
    "MemoryLog",
    "Message",
    "NeedData",
    "RangeSet",
    "ReferenceNode",
    "ReferenceSession",
    "SessionStats",
    "Side",
    "State",
    "SyncConnection",
    "Want",
    "WantEnd",
    "decode_message",
    "deliver",
    "encode_message",
    "frame_message",
    "max_frame_for",
    "offer_from_changes",
    "offer_from_heads",
    "plan_wants",
    "run_pair",
    "wanted_entries",
]
