"""What the channel tells its caller: events on success, one error family on failure.

The sans-IO :class:`~agent.channel.connection.SecureChannel` turns bytes into
these events, h11-style. Events are frozen, slotted dataclasses with
keyword-only constructors that check their fields::

    >>> Message(data=b"hello")
    Message(data=b'hello')

Errors. Everything the *peer* can cause — a malformed frame, a message that
does not decrypt, a forged identity proof, a wrong pre-shared key, a refused
identity — is a :class:`ChannelRejected` (a :class:`~agent.errors.ChannelError`)
with a ``reason`` for the log. That is the channel's fuzz invariant: whatever
bytes arrive, the channel parses them or raises :class:`ChannelRejected`, never
anything else. A peer refused by the caller's trust decision is the subclass
:class:`UntrustedPeer`, which also names the peer. A handshake that takes too
long is :class:`ChannelTimeout`. Misusing the state machine (sending before the
handshake finished, feeding data after a failure) is our own bug and raises
:class:`~agent.errors.LocalProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ChannelError
from ..identity import NodeId

__all__ = [
    "ChannelRejected",
    "ChannelTimeout",
    "Closed",
    "Event",
    "HandshakeComplete",
    "Message",
    "UntrustedPeer",
]

SAS_DIGITS = 6


class ChannelRejected(ChannelError):
    """The peer sent something the channel refuses, so the channel is over.

    ``reason`` is a short, log-ready sentence (``"handshake message 2 does not
    decrypt (wrong pre-shared key, or tampered)"``). Catch this one class to
    handle every way a peer can end a session::

        try:
            events = channel.receive_data(chunk)
        except ChannelRejected as exc:
            log.warning("channel refused: %s", exc.reason)
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UntrustedPeer(ChannelRejected):
    """The peer proved its identity, but the caller's trust decision refused it.

    ``peer`` is the proven :class:`~agent.identity.NodeId`; ``reason`` is what
    the trust hook returned::

        def trust(peer: NodeId) -> str | None:
            return None if peer in allowed else "not in the peer book"
    """

    def __init__(self, peer: NodeId, reason: str) -> None:
        self.peer = peer
        super().__init__(f"peer {peer} refused: {reason}")
        self.reason = reason


class ChannelTimeout(ChannelError, TimeoutError):
    """The handshake did not finish within the allowed time; the link is closed.

    Raised by :func:`~agent.channel.stream.open_channel`::

        try:
            channel = await open_channel(stream, me, initiator=True, trust=t, timeout=5)
        except ChannelTimeout:
            ...  # the peer is slow, silent, or not a Lichen node
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeComplete:
    """The handshake finished: the peer proved it holds ``peer``'s key, and was trusted.

    ``sas`` is the 6-digit short authentication string both sides show when
    people pair nodes: equal digits mean no one sits in the middle.
    ``handshake_hash`` is Noise's final ``h``, unique to this session (for
    channel binding by the layers above)::

        HandshakeComplete(peer=node_id, sas="042917", handshake_hash=h)
    """

    peer: NodeId
    sas: str
    handshake_hash: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.peer, NodeId):
            raise TypeError("peer must be a NodeId")
        if len(self.sas) != SAS_DIGITS or not self.sas.isdigit():
            raise ValueError(f"sas must be {SAS_DIGITS} decimal digits, not {self.sas!r}")
        if not isinstance(self.handshake_hash, bytes) or not self.handshake_hash:
            raise ValueError("handshake_hash must be non-empty bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One application message, exactly as the peer passed it to ``send``.

    Messages keep their boundaries: a 1 MB ``send`` arrives as one
    ``Message`` even though it travelled as many Noise messages::

        Message(data=b"hello")
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or not self.data:
            raise ValueError("a message carries at least one byte")


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed:
    """The peer closed the channel in order (an authenticated close notice).

    A link that simply ends without one is *not* ``Closed``: it is a
    :class:`ChannelRejected`, since a cut link must not look like a clean end::

        Closed()
    """


Event = HandshakeComplete | Message | Closed
"""Everything :meth:`SecureChannel.receive_data` can return."""
