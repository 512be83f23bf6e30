"""The sans-IO sync connection: bytes in, events out; events in, bytes out.

:class:`SyncConnection` knows nothing about stores, sockets or time. It
buffers received bytes, hands out typed events, turns events into bytes, and
enforces every rule it can check: message order (the tables in
:mod:`agent.sync.state`), ranges offered and wanted, entry order, credit and
frame sizes. The caller — the asyncio shell over a channel, or the reference
peer in :mod:`agent.sync.reference` — decides what to offer, want, send and
store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Literal, cast

from ..entry import DEFAULT_MAX_ENTRY_SIZE
from ..errors import LocalProtocolError, RemoteProtocolError
from ..sansio import NEED_DATA, NeedData
from .events import (
    PROTOCOL_VERSION,
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
    Message,
    Want,
)
from .rounds import MAX_RANGES, CreditWindow, Round
from .state import ConnectionState, Side, State
from .wire import FrameReader, decode_message, frame_message, max_frame_for

__all__ = ["DEFAULT_WINDOW", "NEED_DATA", "NeedData", "SyncConnection"]


DEFAULT_WINDOW: Final = Credit(entries=1024, bytes=256 * 1024)
"""The credit a receiver grants right after HELLO (see docs/protocol.md, flow control)."""


class SyncConnection:
    """One end of a sync session, without I/O (h11-style).

    The project's sans-IO convention (:mod:`agent.sansio`): feed what the
    stream delivers to :meth:`receive_data` (``b""`` at its end), take events
    from :meth:`next_event` until it returns :data:`NEED_DATA`, :meth:`send`
    messages, and write what :meth:`data_to_send` returns. Both sides are
    equal: each offers its log (provider) and asks for the peer's (receiver)
    at the same time::

        conn = SyncConnection()
        conn.send(Hello(node=me, role="board", since=checkpoint, change=last_change))
        conn.send(DEFAULT_WINDOW)                 # the initial credit
        stream.write(conn.data_to_send())
        conn.receive_data(stream_bytes)
        for event in conn.events():               # until NEED_DATA
            ...                                   # react: offer, want, stream, store

    Whatever the peer sends, :meth:`next_event` returns an event or raises
    :class:`~agent.errors.RemoteProtocolError` naming the problem; the peer's
    side is then in ``State.ERROR`` and only an :class:`ErrorMessage` may still
    be sent. A message we may not send raises
    :class:`~agent.errors.LocalProtocolError` and changes nothing.
    """

    def __init__(
        self, *, max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE, max_ranges: int = MAX_RANGES
    ) -> None:
        self.max_entry_size = max_entry_size
        self.strict_entries = True
        """False: ENTRY content is decoded without proving its canonical form (see
        :func:`~agent.sync.wire.decode_message`); the caller must prove it."""
        self._state = ConnectionState()
        self._reader = FrameReader(max_frame_for(max_entry_size))
        self._rounds = {Side.LOCAL: Round(max_ranges), Side.REMOTE: Round(max_ranges)}
        self._windows = {Side.LOCAL: CreditWindow(), Side.REMOTE: CreditWindow()}
        self._remote_error: str | None = None
        self._closed: ConnectionClosed | None = None
        self.peer_hello: Hello | None = None
        """The peer's HELLO, once received."""
        self._outgoing = bytearray()
        self.bytes_sent = 0
        """Bytes of every message sent (queued for :meth:`data_to_send`)."""
        self.bytes_received = 0

    # ---------------------------------------------------------------- state

    @property
    def our_state(self) -> State:
        return self._state.states[Side.LOCAL]

    @property
    def their_state(self) -> State:
        return self._state.states[Side.REMOTE]

    @property
    def peer_live(self) -> bool:
        """The peer asked for LIVE (and has not said BYE since)."""
        return self._state.live[Side.REMOTE]

    @property
    def closed(self) -> bool:
        """Both sides said BYE: nothing more will happen; close the stream."""
        return self._state.closed

    @property
    def send_credit(self) -> tuple[int, int]:
        """``(entries, bytes)`` we may still send before the peer grants more."""
        window = self._windows[Side.LOCAL]
        return window.entries, window.bytes

    @property
    def receive_credit(self) -> tuple[int, int]:
        """``(entries, bytes)`` the peer may still send us."""
        window = self._windows[Side.REMOTE]
        return window.entries, window.bytes

    @property
    def their_wants(self) -> tuple[Want, ...]:
        """What the peer wants from our round and we have not streamed past yet, in order."""
        return self._rounds[Side.LOCAL].wants

    @property
    def our_wants(self) -> tuple[Want, ...]:
        """What we asked of the peer's round and it has not streamed past yet."""
        return self._rounds[Side.REMOTE].wants

    @property
    def offer_change(self) -> int | None:
        """The change our current round covers (its HAVE_END), for our DONE."""
        return self._rounds[Side.LOCAL].change

    def can_send_entry(self, size: int) -> bool:
        """Whether an ENTRY of ``size`` bytes may be sent now (we stream, credit allows)."""
        return self.our_state is State.SENDING and self._windows[Side.LOCAL].allows(size)

    # -------------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the stream ended."""
        if not data:
            self._reader.feed_eof()
            return
        if self._reader.eof:
            raise LocalProtocolError("receive_data after the end of the stream")
        self._reader.feed(bytes(data))

    def next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        """The next event, :data:`NEED_DATA`, or :class:`ConnectionClosed` (again and
        again) once the stream has ended; raises RemoteProtocolError for a broken peer."""
        if self._remote_error is not None:
            raise RemoteProtocolError(f"the connection is in ERROR state: {self._remote_error}")
        if self._closed is not None:
            return self._closed
        try:
            body = self._reader.next_frame()
            if body is None:
                if not self._reader.eof:
                    return NEED_DATA
                self._closed = ConnectionClosed(clean=self.their_state is State.CLOSED)
                return self._closed
            message = decode_message(
                body, max_entry_size=self.max_entry_size, strict=self.strict_entries
            )
            self._process(Side.REMOTE, message)
        except RemoteProtocolError as exc:
            self._remote_failed(str(exc))
            raise
        except LocalProtocolError as exc:
            self._remote_failed(str(exc))
            raise RemoteProtocolError(str(exc)) from None
        self.bytes_received += len(body)
        return message

    def events(self) -> Iterator[Event]:
        """Every event available now (stops at NEED_DATA, or after ConnectionClosed)."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event
            if isinstance(event, ConnectionClosed):
                return

    def _remote_failed(self, reason: str) -> None:
        self._remote_error = reason
        self._state.fail(Side.REMOTE)

    # ---------------------------------------------------------------- sending

    def send(self, message: Message) -> None:
        """Queue ``message`` for :meth:`data_to_send`, after checking we may send it now."""
        if type(message) is not EntryData and not isinstance(message, Message):
            raise LocalProtocolError(f"cannot send {type(message).__name__}: not a sync message")
        if self._remote_error is not None and not isinstance(message, ErrorMessage):
            raise LocalProtocolError(
                f"cannot send {message.NAME}: the peer broke the protocol "
                f"({self._remote_error}); only ERROR may follow"
            )
        if isinstance(message, Hello) and message.version != PROTOCOL_VERSION:
            raise LocalProtocolError(f"this connection speaks version {PROTOCOL_VERSION} only")
        if isinstance(message, EntryData) and message.size > self.max_entry_size:
            raise LocalProtocolError(
                f"ENTRY of {message.size} bytes is above the entry cap {self.max_entry_size}"
            )
        self._process(Side.LOCAL, message)
        data = frame_message(message)
        self._outgoing += data
        self.bytes_sent += len(data)

    def send_all(self, messages: Iterable[Message]) -> None:
        """:meth:`send` each message in turn."""
        for message in messages:
            self.send(message)

    def data_to_send(self) -> bytes:
        """Take the bytes of every message sent and not yet taken (possibly ``b""``)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    # ----------------------------------------------------------------- rules

    def _process(self, side: Side, message: Message) -> None:
        """Check ``message`` sent by ``side`` against every rule, then apply it."""
        kind = type(message)
        if kind is EntryData and self._state.states[side] is State.SENDING:
            # the hot message, which leaves both states as they are
            self._take_entry(side, cast(EntryData, message))
            return
        states = self._state.check(side, kind)
        other = side.other
        if isinstance(message, Have):
            self._rounds[side].add_have(message)
        elif isinstance(message, HaveEnd):
            self._rounds[side].end_offer(message.change)
        elif isinstance(message, Want):
            if self._state.states[other] is State.AWAIT_WANTS:  # else BYE crossed it: ignored
                self._rounds[other].add_want(message)
        elif isinstance(message, EntryData):
            self._take_entry(side, message)
        elif isinstance(message, Credit):
            self._windows[other].grant(message.entries, message.bytes)
        elif isinstance(message, Done):
            self._rounds[side].finish(message.change)
        elif isinstance(message, Bye):
            self._rounds[side].abandon()
        self._state.commit(side, kind, states)
        if isinstance(message, Hello) and side is Side.REMOTE:
            self.peer_hello = message

    def _take_entry(self, side: Side, message: EntryData) -> None:
        """An ENTRY sent by ``side`` while it streams: within credit, and wanted."""
        window = self._windows[side]
        size = len(message.entry.raw)
        if not window.allows(size):
            window.spend(size)  # raises, naming the credit left
        entry = message.entry
        self._rounds[side].take_entry(entry.author, entry.seq)
        window.spend(size)
