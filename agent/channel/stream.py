"""The asyncio shell: run a :class:`SecureChannel` over any :class:`~agent.link_api.Stream`.

:func:`open_channel` performs the handshake (with a time limit) and returns a
:class:`Channel`; all protocol logic stays in the sans-IO core, this module
only moves bytes. Errors are mapped where they enter: a stream's
:class:`~agent.errors.TransportError` becomes a :class:`~agent.errors.ChannelError`
(the original is its ``__cause__``), so callers handle one family. On any
failure the stream is closed.

Example, a node dialling a peer it knows::

    async def sync_with(transport: Transport, address: str, me: Identity) -> None:
        stream = await transport.connect(address)
        channel = await open_channel(
            stream, me, initiator=True,
            trust=lambda peer: None if peer in peer_book else "unknown node",
        )
        async with channel:
            log.info("channel to %s, code %s", channel.peer, channel.sas)
            await channel.send(b"hello")
            reply = await channel.receive()      # b"" once the peer closed
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType

from ..errors import ChannelError, TransportError
from ..identity import Identity, NodeId
from ..link_api import Stream
from ..sansio import NEED_DATA
from .connection import DEFAULT_MAX_MESSAGE_SIZE, SecureChannel, TrustDecision
from .events import ChannelTimeout, Closed, HandshakeComplete, Message

__all__ = ["CLOSE_TIMEOUT", "DEFAULT_HANDSHAKE_TIMEOUT", "Channel", "open_channel"]

DEFAULT_HANDSHAKE_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`Channel.close` waits for the link to take the close notice."""
READ_SIZE = 65536


def _link_error(stream: Stream, exc: TransportError) -> ChannelError:
    error = ChannelError(f"the link to {stream.peer} failed: {exc}")
    error.__cause__ = exc
    return error


async def _flush(stream: Stream, machine: SecureChannel) -> None:
    data = machine.data_to_send()
    if data:
        await stream.send(data)


async def _handshake(stream: Stream, machine: SecureChannel) -> HandshakeComplete:
    await _flush(stream, machine)
    while True:
        event = machine.next_event()
        await _flush(stream, machine)
        if isinstance(event, HandshakeComplete):
            return event
        if event is NEED_DATA:
            machine.receive_data(await stream.receive(READ_SIZE))


async def open_channel(
    stream: Stream,
    identity: Identity,
    *,
    initiator: bool,
    trust: TrustDecision,
    psk: bytes | Sequence[bytes] | None = None,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    received: bytes = b"",
) -> Channel:
    """Run the handshake over ``stream`` and return the open channel.

    Raises :class:`~agent.channel.events.ChannelRejected` (or its subclass
    :class:`~agent.channel.events.UntrustedPeer`) when the peer fails to prove
    its identity or is refused by ``trust``, :class:`ChannelTimeout` after
    ``timeout`` seconds, and :class:`~agent.errors.ChannelError` when the link
    fails; the stream is closed in every one of those cases.
    """
    machine = SecureChannel(
        identity, initiator=initiator, trust=trust, psk=psk, max_message_size=max_message_size
    )
    if received:
        machine.receive_data(received)
    try:
        async with asyncio.timeout(timeout):
            complete = await _handshake(stream, machine)
    except TimeoutError:
        await _close_quietly(stream)
        raise ChannelTimeout(
            f"the handshake with {stream.peer} did not finish within {timeout} s"
        ) from None
    except TransportError as exc:
        await _close_quietly(stream)
        raise _link_error(stream, exc) from exc
    except BaseException:
        await _close_quietly(stream)
        raise
    return Channel(stream, machine, complete)


async def _close_quietly(stream: Stream) -> None:
    with contextlib.suppress(TransportError):
        await stream.close()


class Channel:
    """An open, encrypted, mutually authenticated channel to one peer.

    ``peer`` is the peer's proven node id and ``sas`` the 6-digit code both
    sides can compare. Messages keep their boundaries: each ``send(data)``
    arrives as one ``receive()``; ``receive()`` returns ``b""`` once the peer
    closed in order, and raises :class:`~agent.errors.ChannelError` if the link
    broke or a message was tampered with. ``send`` and ``receive`` may run in
    different tasks. ``send_eof()`` half-closes (keep reading the peer's
    answers); ``close()`` ends both directions. Use it as an async context
    manager, or call ``close()``::

        async with await open_channel(stream, me, initiator=False, trust=t) as channel:
            while data := await channel.receive():
                await channel.send(handle(data))
    """

    def __init__(self, stream: Stream, machine: SecureChannel, complete: HandshakeComplete):
        self._stream = stream
        self._machine = machine
        self.peer: NodeId = complete.peer
        self.sas: str = complete.sas
        self.handshake_hash: bytes = complete.handshake_hash
        self.psk: bytes | None = machine.psk
        self._send_lock = asyncio.Lock()
        self._receive_lock = asyncio.Lock()
        self._peer_closed = False
        self._eof_sent = False
        self._closed = False

    def __repr__(self) -> str:
        return f"Channel(peer={self.peer!r}, sas={self.sas!r}, link={self._stream.peer!r})"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def stream(self) -> Stream:
        """The underlying link."""
        return self._stream

    async def send(self, data: bytes) -> None:
        """Send one message (``b""`` sends nothing); waits until the link took it."""
        async with self._send_lock:
            self._machine.send(data)
            try:
                await _flush(self._stream, self._machine)
            except TransportError as exc:
                await _close_quietly(self._stream)
                raise _link_error(self._stream, exc) from exc

    async def receive(self) -> bytes:
        """The next message from the peer, or ``b""`` once either side closed the channel."""
        async with self._receive_lock:
            while not (self._peer_closed or self._closed):
                try:
                    event = self._machine.next_event()
                    if event is NEED_DATA:
                        self._machine.receive_data(await self._stream.receive(READ_SIZE))
                        continue
                except TransportError as exc:
                    if self.closed:  # we hung up while this receive was waiting
                        return b""
                    await _close_quietly(self._stream)
                    raise _link_error(self._stream, exc) from exc
                except ChannelError:
                    if self.closed:
                        return b""
                    await _close_quietly(self._stream)
                    raise
                if isinstance(event, Message):
                    return event.data
                if isinstance(event, Closed):
                    self._peer_closed = True
            return b""

    async def send_eof(self) -> None:
        """Half-close: send the close notice, after which the peer's ``receive()``
        returns ``b""``; this side can still receive. Idempotent."""
        async with self._send_lock:
            if self._eof_sent or self._closed:
                return
            self._eof_sent = True
            self._machine.close()
            try:
                await _flush(self._stream, self._machine)
                await self._stream.send_eof()
            except TransportError as exc:
                await _close_quietly(self._stream)
                raise _link_error(self._stream, exc) from exc

    async def close(self) -> None:
        """Send the close notice (unless already sent) and close the link in
        both directions; a waiting ``receive()`` returns ``b""``. Idempotent.
        A peer that takes nothing for :data:`CLOSE_TIMEOUT` seconds does not
        get the notice: the link is closed all the same (a send still waiting
        fails)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT), self._send_lock:
                self._machine.close()
                with contextlib.suppress(TransportError):
                    await _flush(self._stream, self._machine)
        await _close_quietly(self._stream)

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
