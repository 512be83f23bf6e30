"""The encrypted, mutually authenticated channel between Lichen nodes.

Noise ``XX`` (``25519``, ``ChaChaPoly``, ``BLAKE2b``; ``XXpsk3`` with a
pre-shared key for one-time invites), verified against the published Noise
test vectors, with each side proving its Ed25519 node id inside the
handshake. A sans-IO core (:class:`SecureChannel`) and a thin asyncio shell
(:func:`open_channel` → :class:`Channel`) over any :class:`~agent.link_api.Stream`::

    channel = await open_channel(stream, identity, initiator=True, trust=decide)
    print(channel.peer, channel.sas)     # the proven NodeId, the 6-digit code
    await channel.send(b"hello")
    reply = await channel.receive()

Modules: :mod:`.primitives` (crypto functions by spec name), :mod:`.patterns`
(handshake patterns, protocol names), :mod:`.noise` (the spec's state
objects), :mod:`.binding` (identity proofs, static keys, the 6-digit code),
:mod:`.framing` (frames and records), :mod:`.connection` (the sans-IO
channel), :mod:`.events` (events and errors), :mod:`.stream` (asyncio).
"""

from __future__ import annotations

from .binding import (
    PROLOGUE,
    PROTOCOL_NAME,
    PSK_PROTOCOL_NAME,
    short_authentication_string,
    static_keypair,
)
from .connection import ChannelState, SecureChannel, TrustDecision
from .events import (
    ChannelRejected,
    ChannelTimeout,
    Closed,
    Event,
    HandshakeComplete,
    Message,
    UntrustedPeer,
)
from .noise import CipherState, HandshakeState, SymmetricState
from .patterns import NoiseProtocol
from .primitives import KeyPair
from .stream import Channel, open_channel

__all__ = [
    "PROLOGUE",
    "PROTOCOL_NAME",
    "PSK_PROTOCOL_NAME",
    "Channel",
    "ChannelRejected",
    "ChannelState",
    "ChannelTimeout",
    "CipherState",
    "Closed",
    "Event",
    "HandshakeComplete",
    "HandshakeState",
    "KeyPair",
    "Message",
    "NoiseProtocol",
    "SecureChannel",
    "SymmetricState",
    "TrustDecision",
    "UntrustedPeer",
    "open_channel",
    "short_authentication_string",
    "static_keypair",
]
