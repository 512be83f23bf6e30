"""The Lichen secure channel as a sans-IO state machine: bytes in, events and bytes out.

:class:`SecureChannel` runs Noise ``XX`` (or ``XXpsk3``) with identity proofs
(:mod:`agent.channel.binding`), then carries application messages as records
(:mod:`agent.channel.framing`). It never touches a socket: feed it what the
link delivered, ask it for events, and send what it has queued — the
project's sans-IO convention (:mod:`agent.sansio`). Two channels wired back
to back:

    >>> alice, bob = Identity(bytes([1]) * 32), Identity(bytes([2]) * 32)
    >>> a = SecureChannel(alice, initiator=True, trust=lambda peer: None)
    >>> b = SecureChannel(bob, initiator=False, trust=lambda peer: None)
    >>> b.receive_data(a.data_to_send())     # message 1 (a queued it at once)
    >>> b.next_event()                       # no event yet; b queued message 2
    NEED_DATA
    >>> a.receive_data(b.data_to_send())
    >>> a.next_event()                       # a checked Bob's proof, queued message 3
    NEED_DATA
    >>> b.receive_data(a.data_to_send())
    >>> b.next_event()                       # b checked Alice's proof, queued READY
    HandshakeComplete(peer=NodeId(lc1...), sas='...')
    >>> a.receive_data(b.data_to_send())
    >>> done = a.next_event()
    >>> done.peer == bob.node_id and done.sas == b.sas
    True
    >>> a.send(b"hello")
    >>> b.receive_data(a.data_to_send())
    >>> b.next_event()
    Message(data=b'hello')

States (a table, below, says which records each accepts)::

    HANDSHAKE ──msg 3 sent──▶ AWAIT_READY ──READY──▶ OPEN    (initiator)
    HANDSHAKE ──msg 3 accepted, READY sent─────────▶ OPEN    (responder)
    OPEN ──CLOSE──▶ PEER_CLOSED;   anything the peer gets wrong ──▶ FAILED

The responder learns the initiator's identity in message 3 and confirms with
a READY record, so the initiator only reports ``HandshakeComplete`` once both
sides have accepted each other. A link that ends without a CLOSE record is
an error (a cut link must not look like a clean end). Every failure the peer
can cause raises :class:`~agent.channel.events.ChannelRejected`; after one,
every call but :meth:`SecureChannel.close` raises it again.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Sequence
from typing import Literal, NoReturn

from ..errors import LocalProtocolError
from ..identity import Identity, NodeId
from ..sansio import NEED_DATA, NeedData
from .binding import (
    PROLOGUE,
    PROOF_LEN,
    PROTOCOL_NAME,
    PSK_LEN,
    PSK_PROTOCOL_NAME,
    check_identity_proof,
    make_identity_proof,
    short_authentication_string,
    static_keypair,
)
from .events import ChannelRejected, Closed, Event, HandshakeComplete, Message, UntrustedPeer
from .framing import (
    MIN_TRANSPORT_FRAME,
    FrameReader,
    Reassembler,
    RecordType,
    encode_frame,
    fragment,
    parse_record,
)
from .noise import MAX_MESSAGE_LEN, CipherState, HandshakeState
from .patterns import NoiseProtocol

__all__ = ["ChannelState", "SecureChannel", "TrustDecision"]

TrustDecision = Callable[[NodeId], str | None]
"""Given the peer's proven node id: ``None`` to accept it, or the reason to refuse."""

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
REKEY_INTERVAL = 1 << 20  # records per direction between two Rekey() calls


class ChannelState(enum.Enum):
    """Where a :class:`SecureChannel` is (see the module docstring's diagram)::

    if channel.state is ChannelState.OPEN:
        channel.send(b"...")
    """

    HANDSHAKE = "handshake"
    AWAIT_READY = "await-ready"
    OPEN = "open"
    PEER_CLOSED = "peer-closed"
    FAILED = "failed"


# Which records the peer may send in each state after the handshake messages.
_RECORDS_ACCEPTED: dict[ChannelState, frozenset[RecordType]] = {
    ChannelState.AWAIT_READY: frozenset({RecordType.READY}),
    ChannelState.OPEN: frozenset({RecordType.DATA, RecordType.MORE, RecordType.CLOSE}),
    ChannelState.PEER_CLOSED: frozenset(),
}


class SecureChannel:
    """One end of an encrypted, mutually authenticated Lichen channel, without I/O.

    ``identity`` is this node; ``trust`` decides about the peer once it has
    proven its node id (return ``None`` to accept, or a reason to refuse);
    ``psk`` (32 bytes) switches to ``XXpsk3``, which both sides must use with
    the same key; a responder may be given several (the open invites of a
    node), tried in turn on message 3 — :attr:`psk` then says which matched.
    ``rekey_interval`` must be the same on both sides; leave it alone.
    ``ephemeral`` fixes the ephemeral private key, for tests only.
    ``trust`` runs inside :meth:`next_event`; what it raises propagates as is
    and fails the channel; an empty refusal reason is logged as a default one.

    The caller's loop, in any shell (see :mod:`agent.channel.stream`)::

        channel = SecureChannel(me, initiator=True, trust=decide)
        link.write(channel.data_to_send())
        while True:
            event = channel.next_event()
            link.write(channel.data_to_send())   # handshake replies, READY
            if event is NEED_DATA:
                channel.receive_data(link.read())  # b"" at the end of the link
            elif isinstance(event, Message):
                handle(event.data)

    Memory is bounded: besides the bytes fed and not yet turned into events
    (call :meth:`next_event` until it returns :data:`NEED_DATA` after each
    :meth:`receive_data`), the channel holds at most one incomplete frame
    (≤ 65537 bytes; during the handshake only the exact size of the next
    message is accepted, so garbage fails within 2 bytes) and one incomplete
    message (≤ ``max_message_size``, refused as soon as a fragment crosses it).
    """

    def __init__(
        self,
        identity: Identity,
        *,
        initiator: bool,
        trust: TrustDecision,
        psk: bytes | Sequence[bytes] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        rekey_interval: int = REKEY_INTERVAL,
        ephemeral: bytes | None = None,
    ) -> None:
        candidates = [psk] if isinstance(psk, bytes) else list(psk or ())
        if initiator and len(candidates) > 1:
            raise ValueError("only a responder can be given several pre-shared keys")
        if any(len(key) != PSK_LEN for key in candidates):
            raise ValueError(f"a pre-shared key is {PSK_LEN} bytes")
        psk = candidates[0] if candidates else None
        if rekey_interval < 1:
            raise ValueError("rekey_interval must be at least 1")
        protocol = NoiseProtocol.from_name(PSK_PROTOCOL_NAME if psk else PROTOCOL_NAME)
        self.identity = identity
        self.initiator = initiator
        self._trust = trust
        self._psk_candidates = candidates
        self.psk: bytes | None = psk
        """The pre-shared key the handshake used (with several: the one that matched)."""
        self._handshake = HandshakeState(
            protocol,
            initiator=initiator,
            prologue=PROLOGUE,
            s=static_keypair(identity),
            e=protocol.dh.keypair(ephemeral) if ephemeral is not None else None,
            psks=[psk] if psk else [],
        )
        self._reader = FrameReader()
        self._reassembler = Reassembler(max_message_size)
        self._outgoing = bytearray()
        self._rekey_interval = rekey_interval
        self._sender: CipherState | None = None
        self._receiver: CipherState | None = None
        self._sent = self._received = 0
        self._failure: ChannelRejected | None = None
        self._closed_locally = False
        self.state = ChannelState.HANDSHAKE
        self.peer: NodeId | None = None
        self.sas: str | None = None
        if self._handshake.my_turn:
            self._write_handshake()

    # -- what the caller sees -------------------------------------------------

    @property
    def handshake_hash(self) -> bytes:
        """Noise's ``h`` (final once the handshake is complete)."""
        return self._handshake.handshake_hash

    @property
    def max_message_size(self) -> int:
        return self._reassembler.max_message_size

    def data_to_send(self) -> bytes:
        """Take every byte queued for the peer (possibly ``b""``)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the link; ``b""`` means the link ended."""
        self._check_not_failed()
        if self._reader.at_eof:
            raise LocalProtocolError("receive_data after the end of the stream")
        self._reader.feed(data)

    def next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        """The next event, or :data:`NEED_DATA` until more data arrives (or, once
        closed, ever)."""
        self._check_not_failed()
        try:
            return self._next_event()
        except ChannelRejected as exc:
            self._fail(exc)

    def send(self, data: bytes) -> None:
        """Queue one application message (any size up to ``max_message_size``)."""
        self._check_not_failed()
        if self.state not in (ChannelState.OPEN, ChannelState.PEER_CLOSED):
            raise LocalProtocolError(f"cannot send while the channel is {self.state.value}")
        if self._closed_locally:
            raise LocalProtocolError("cannot send after close()")
        if len(data) > self.max_message_size:
            raise LocalProtocolError(
                f"a {len(data)}-byte message exceeds max_message_size={self.max_message_size}"
            )
        for record in fragment(data) if data else ():
            self._write_record(record)

    def close(self) -> None:
        """Queue the close notice (if the channel is open). Idempotent; never raises."""
        if self._closed_locally:
            return
        self._closed_locally = True
        if self._sender is not None and self.state is not ChannelState.FAILED:
            self._write_record(bytes([RecordType.CLOSE]))

    # -- internals --------------------------------------------------------------

    def _check_not_failed(self) -> None:
        if self._failure is not None:
            raise ChannelRejected(f"the channel already failed: {self._failure.reason}")

    def _fail(self, exc: ChannelRejected) -> NoReturn:
        self.state = ChannelState.FAILED
        self._failure = exc
        self._outgoing.clear()
        raise exc

    def _next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        while True:
            frame = self._reader.next_frame(**self._frame_limits())
            if frame is None:
                self._check_eof()
                return NEED_DATA
            event = self._on_frame(frame)
            if event is not None:
                return event

    def _frame_limits(self) -> dict[str, int]:
        if self.state is ChannelState.HANDSHAKE:
            size = self._handshake.next_message_length(self._payload_len())
            return {"min_len": size, "max_len": size}
        return {"min_len": MIN_TRANSPORT_FRAME, "max_len": MAX_MESSAGE_LEN}

    def _check_eof(self) -> None:
        if not self._reader.at_eof:
            return
        if self._reader.buffered:
            raise ChannelRejected("the link ended in the middle of a frame")
        if self.state is ChannelState.HANDSHAKE:
            raise ChannelRejected("the link ended during the handshake")
        if self.state is ChannelState.AWAIT_READY:
            raise ChannelRejected(
                "the peer ended the link instead of confirming the handshake "
                "(it may not trust this node)"
            )
        if self.state is ChannelState.OPEN:
            raise ChannelRejected("the link ended without a close notice (cut or truncated)")

    def _payload_len(self) -> int:
        return 0 if self._handshake.message_index == 0 else PROOF_LEN

    def _write_handshake(self) -> None:
        if self._handshake.message_index == 0:
            message = self._handshake.write_message(b"")
        else:
            message = self._handshake.write_message(lambda h: make_identity_proof(self.identity, h))
        self._outgoing += encode_frame(message)
        if self._handshake.complete:  # the initiator sent message 3
            self._sender, self._receiver = self._handshake.transport_ciphers()
            self.state = ChannelState.AWAIT_READY

    def _on_frame(self, frame: bytes) -> Event | None:
        if self.state is ChannelState.HANDSHAKE:
            return self._on_handshake_message(frame)
        return self._on_record(frame)

    def _on_handshake_message(self, frame: bytes) -> Event | None:
        hs = self._handshake
        number = hs.message_index + 1
        if len(self._psk_candidates) > 1 and number == 3:
            hs, payload = self._read_with_candidates(hs, frame)
        else:
            payload = hs.read_message(frame)
        if number == 1:
            if payload:
                raise ChannelRejected("handshake message 1 carries an unexpected payload")
        else:
            peer = check_identity_proof(payload, hs.payload_hash, message=number)
            self._decide(peer)
            self.peer = peer
        if hs.complete:  # the responder accepted message 3
            self._sender, self._receiver = hs.transport_ciphers()
            self._write_record(bytes([RecordType.READY]))
            return self._opened()
        self._write_handshake()
        return None

    def _read_with_candidates(
        self, hs: HandshakeState, frame: bytes
    ) -> tuple[HandshakeState, bytes]:
        """Message 3 of ``XXpsk3`` with several possible keys (open invites): try
        each on a copy of the handshake; the first that decrypts is the one."""
        for candidate in self._psk_candidates:
            trial = copy.deepcopy(hs)
            trial._psks = [candidate]
            try:
                payload = trial.read_message(frame)
            except ChannelRejected:
                continue
            self._handshake, self.psk = trial, candidate
            return trial, payload
        raise ChannelRejected(
            "handshake message 3 does not decrypt with any pre-shared key held here "
            "(a wrong or unknown invite code)"
        )

    def _decide(self, peer: NodeId) -> None:
        """Ask the trust hook; a refusal (or a hook that raises) ends the channel."""
        try:
            refusal = self._trust(peer)
        except BaseException as exc:
            self.state = ChannelState.FAILED
            self._failure = ChannelRejected(f"the trust decision about {peer} raised {exc!r}")
            self._outgoing.clear()
            raise
        if refusal is not None:
            raise UntrustedPeer(peer, refusal or "refused by the trust decision")

    def _opened(self) -> HandshakeComplete:
        if self.peer is None:
            raise LocalProtocolError("the handshake ended without a peer identity")
        self.state = ChannelState.OPEN
        self.sas = short_authentication_string(self.handshake_hash)
        return HandshakeComplete(peer=self.peer, sas=self.sas, handshake_hash=self.handshake_hash)

    def _on_record(self, frame: bytes) -> Event | None:
        if self._receiver is None:
            raise LocalProtocolError("a transport record before the handshake finished")
        number = self._received + 1
        try:
            plaintext = self._receiver.decrypt_with_ad(b"", frame)
        except ChannelRejected:
            raise ChannelRejected(
                f"transport message {number} does not decrypt (tampered, reordered or corrupted)"
            ) from None
        self._received = number
        if number % self._rekey_interval == 0:
            self._receiver.rekey()
        kind, body = parse_record(plaintext)
        if kind not in _RECORDS_ACCEPTED[self.state]:
            raise ChannelRejected(f"a {kind.name} record is not allowed while {self.state.value}")
        if kind is RecordType.READY:
            return self._opened()
        if kind is RecordType.CLOSE:
            if self._reassembler.pending:
                raise ChannelRejected("the peer closed in the middle of a message")
            self.state = ChannelState.PEER_CLOSED
            return Closed()
        message = self._reassembler.add(kind, body)
        return None if message is None else Message(data=message)

    def _write_record(self, plaintext: bytes) -> None:
        if self._sender is None:
            raise LocalProtocolError("a transport record before the handshake finished")
        self._outgoing += encode_frame(self._sender.encrypt_with_ad(b"", plaintext))
        self._sent += 1
        if self._sent % self._rekey_interval == 0:
            self._sender.rekey()
