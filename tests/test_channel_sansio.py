"""The sans-IO channel: handshakes, identities, trust, psk, messages and closing.

Two :class:`SecureChannel` objects are wired back to back by hand; no I/O."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.channel import (
    PROLOGUE,
    ChannelRejected,
    ChannelState,
    Closed,
    Event,
    HandshakeComplete,
    HandshakeState,
    Message,
    NoiseProtocol,
    SecureChannel,
    UntrustedPeer,
    short_authentication_string,
    static_keypair,
)
from agent.channel.binding import (
    PROOF_LEN,
    PROTOCOL_NAME,
    SIGNATURE_DOMAIN,
    check_identity_proof,
    make_identity_proof,
)
from agent.channel.framing import MAX_RECORD_BODY, RecordType
from agent.errors import LocalProtocolError
from agent.identity import Identity, NodeId
from agent.sansio import NEED_DATA

from .conftest import seeded_identity

ALICE, BOB, MALLORY = seeded_identity(11), seeded_identity(12), seeded_identity(13)
PSK = bytes(range(32))


def accept(peer: NodeId) -> str | None:
    return None


def expect(node: NodeId) -> Callable[[NodeId], str | None]:
    def decide(peer: NodeId) -> str | None:
        return None if peer == node else f"expected {node.short}, got {peer.short}"

    return decide


def pair(
    *,
    initiator: Identity = ALICE,
    responder: Identity = BOB,
    seed: int | None = None,
    trust_a: Callable[[NodeId], str | None] = accept,
    trust_b: Callable[[NodeId], str | None] = accept,
    psk_a: bytes | None = None,
    psk_b: bytes | list[bytes] | None = None,
    **options: int,
) -> tuple[SecureChannel, SecureChannel]:
    """An initiator and a responder; ``seed`` fixes both ephemeral keys."""
    e_a = None if seed is None else bytes([seed]) * 32
    e_b = None if seed is None else bytes([seed + 100]) * 32
    a = SecureChannel(initiator, initiator=True, trust=trust_a, psk=psk_a, ephemeral=e_a, **options)
    b = SecureChannel(
        responder, initiator=False, trust=trust_b, psk=psk_b, ephemeral=e_b, **options
    )
    return a, b


def drain(channel: SecureChannel) -> list[Event]:
    events: list[Event] = []
    while (event := channel.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def feed(receiver: SecureChannel, data: bytes, chunk: int | None = None) -> list[Event]:
    """Deliver ``data`` (all at once, or in ``chunk``-byte pieces), draining events."""
    events: list[Event] = []
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        receiver.receive_data(data[start : start + step])
        events += drain(receiver)
    return events


def deliver(
    sender: SecureChannel, receiver: SecureChannel, chunk: int | None = None
) -> list[Event]:
    return feed(receiver, sender.data_to_send(), chunk)


def handshake(
    a: SecureChannel, b: SecureChannel, chunk: int | None = None
) -> tuple[HandshakeComplete, HandshakeComplete]:
    assert deliver(a, b, chunk) == []  # message 1; b answers with message 2
    assert deliver(b, a, chunk) == []  # message 2; a answers with message 3
    (done_b,) = deliver(a, b, chunk)  # message 3; b accepts and sends READY
    (done_a,) = deliver(b, a, chunk)  # READY
    assert isinstance(done_a, HandshakeComplete) and isinstance(done_b, HandshakeComplete)
    return done_a, done_b


def messages(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Message)]


def test_handshake_proves_both_identities_and_agrees_on_the_code() -> None:
    a, b = pair()
    flights = []
    for sender, receiver in ((a, b), (b, a), (a, b)):
        data = sender.data_to_send()
        flights.append(len(data))
        feed(receiver, data)
    ready = b.data_to_send()
    (done_a,) = feed(a, ready)
    assert flights == [2 + 32, 2 + 32 + 48 + PROOF_LEN + 16, 2 + 48 + PROOF_LEN + 16]
    assert len(ready) == 2 + 1 + 16
    assert isinstance(done_a, HandshakeComplete)
    assert done_a.peer == BOB.node_id and b.peer == ALICE.node_id
    assert done_a.sas == b.sas == short_authentication_string(a.handshake_hash)
    assert len(done_a.sas) == 6 and done_a.sas.isdigit()
    assert a.handshake_hash == b.handshake_hash == done_a.handshake_hash
    assert a.state is b.state is ChannelState.OPEN
    # Noise static keys are the ones derived from each node's identity.
    assert a._handshake.rs == static_keypair(BOB).public
    assert b._handshake.rs == static_keypair(ALICE).public
    assert a._handshake.protocol.name == PROTOCOL_NAME


def test_messages_of_any_size_keep_their_boundaries_both_ways() -> None:
    a, b = pair()
    handshake(a, b)
    sizes = [1, 100, MAX_RECORD_BODY, MAX_RECORD_BODY + 1, 3 * MAX_RECORD_BODY + 7, 300_000]
    sent = [bytes([n % 251]) * n for n in sizes]
    for data in sent:
        a.send(data)
        b.send(data[::-1])
    wire = a.data_to_send()
    frames = [-(-len(d) // MAX_RECORD_BODY) for d in sent]  # 2 header + 16 tag + 1 type each
    assert frames == [1, 1, 1, 2, 4, 5]
    assert len(wire) == sum(len(d) + 19 * n for d, n in zip(sent, frames))
    assert max(int.from_bytes(wire[:2], "big") for _ in [0]) <= 65535
    assert messages(feed(b, wire)) == sent
    assert messages(deliver(b, a)) == [d[::-1] for d in sent]
    a.send(b"")  # nothing to send
    assert a.data_to_send() == b""


@given(
    sent=st.lists(st.binary(min_size=1, max_size=3000), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
)
def test_any_split_of_the_stream_gives_the_same_events(sent: list[bytes], cuts: list[int]) -> None:
    """The responder's READY and its messages arrive as one flight, cut anywhere."""
    a, b = pair(seed=7)
    deliver(a, b)
    deliver(b, a)
    deliver(a, b)  # b is open and may send at once, right behind its READY
    for data in sent:
        b.send(data)
    flight = b.data_to_send()
    points = sorted({min(c, len(flight)) for c in cuts} | {0, len(flight)})
    events: list[Event] = []
    for start, end in zip(points, points[1:]):
        events += feed(a, flight[start:end])
    assert isinstance(events[0], HandshakeComplete)
    assert messages(events) == sent and len(events) == 1 + len(sent)


def test_one_byte_at_a_time() -> None:
    a, b = pair()
    done_a, done_b = handshake(a, b, chunk=1)
    assert done_a.sas == done_b.sas
    a.send(b"slowly")
    a.send(bytes(70_000))
    assert messages(deliver(a, b, chunk=1)) == [b"slowly", bytes(70_000)]


def test_the_code_is_a_function_of_the_session_and_differs_between_sessions() -> None:
    codes = set()
    for seed in range(1, 31):
        done_a, done_b = handshake(*pair(seed=seed))
        assert done_a.sas == done_b.sas
        codes.add(done_a.sas)
    assert len(codes) == 30
    assert handshake(*pair(seed=1))[0].sas == handshake(*pair(seed=1))[0].sas
    assert handshake(*pair(seed=1, responder=MALLORY))[0].sas != handshake(*pair(seed=1))[0].sas


def test_static_keys_derive_from_the_identity_seed() -> None:
    key = static_keypair(ALICE)
    assert key == static_keypair(Identity(ALICE.seed)) != static_keypair(BOB)
    assert key.private[0] & 7 == 0 and key.private[31] & 0xC0 == 0x40
    assert key.public not in (ALICE.node_id.key, key.private)


def test_a_man_in_the_middle_with_its_own_keys_is_detected() -> None:
    """Mallory answers Alice with its own identity: Alice, expecting Bob, refuses;
    had she accepted anyone, the two codes would not match."""
    a, m = pair(responder=MALLORY, trust_a=expect(BOB.node_id))
    deliver(a, m)
    with pytest.raises(UntrustedPeer) as refused:
        deliver(m, a)
    assert refused.value.peer == MALLORY.node_id
    assert refused.value.reason == f"expected {BOB.node_id.short}, got {MALLORY.node_id.short}"
    alice_side = handshake(*pair(responder=MALLORY))[0]
    bob_side = handshake(*pair(initiator=MALLORY))[1]
    assert alice_side.sas != bob_side.sas


def _mallory_answers(a: SecureChannel, payload: Callable[[bytes], bytes]) -> bytes:
    """Mallory's own XX message 2 to ``a``, with a payload of her choosing."""
    protocol = NoiseProtocol.from_name(PROTOCOL_NAME)
    forger = HandshakeState(protocol, initiator=False, prologue=PROLOGUE, s=static_keypair(MALLORY))
    forger.read_message(a.data_to_send()[2:])
    message = forger.write_message(payload)
    return len(message).to_bytes(2, "big") + message


def test_claiming_someone_elses_node_id_without_their_key_fails() -> None:
    a, _ = pair()
    forged = _mallory_answers(
        a, lambda h: BOB.node_id.key + MALLORY.sign(SIGNATURE_DOMAIN + b"\x00" + h)
    )
    with pytest.raises(ChannelRejected, match="signature does not cover this session"):
        feed(a, forged)


def test_a_proof_replayed_from_another_session_is_refused() -> None:
    # Mallory dials Bob to collect a genuine proof of Bob's...
    protocol = NoiseProtocol.from_name(PROTOCOL_NAME)
    dialer = HandshakeState(protocol, initiator=True, prologue=PROLOGUE, s=static_keypair(MALLORY))
    bob = SecureChannel(BOB, initiator=False, trust=accept)
    feed(bob, len(m1 := dialer.write_message(b"")).to_bytes(2, "big") + m1)
    bobs_proof = dialer.read_message(bob.data_to_send()[2:])
    assert check_identity_proof(bobs_proof, dialer.payload_hash, message=2) == BOB.node_id
    # ...and plays it to Alice in a session of her own.
    a, _ = pair()
    with pytest.raises(ChannelRejected, match="replayed from another session"):
        feed(a, _mallory_answers(a, lambda h: bobs_proof))


def test_a_recorded_handshake_message_does_not_work_twice() -> None:
    a1, b1 = pair()
    deliver(a1, b1)
    recorded = b1.data_to_send()
    a2, _ = pair()
    with pytest.raises(ChannelRejected, match="handshake message 2"):
        feed(a2, recorded)


def test_identity_proofs_are_checked_exactly() -> None:
    h = bytes(range(64))
    proof = make_identity_proof(ALICE, h)
    assert len(proof) == PROOF_LEN and check_identity_proof(proof, h, message=3) == ALICE.node_id
    with pytest.raises(ChannelRejected, match="95-byte identity proof"):
        check_identity_proof(proof[:-1], h, message=3)
    with pytest.raises(ChannelRejected, match="handshake message 3"):
        check_identity_proof(proof, bytes(64), message=3)


def test_the_initiator_refuses_an_untrusted_responder() -> None:
    asked: list[NodeId] = []

    def trust(peer: NodeId) -> str | None:
        asked.append(peer)
        return "not in the peer book"

    a, b = pair(trust_a=trust)
    deliver(a, b)
    with pytest.raises(UntrustedPeer, match="not in the peer book") as refused:
        deliver(b, a)
    assert refused.value.reason == "not in the peer book" and refused.value.peer == BOB.node_id
    assert asked == [BOB.node_id] and a.state is ChannelState.FAILED
    assert a.data_to_send() == b""  # message 3, and with it Alice's identity, is never sent
    b.receive_data(b"")  # Alice hangs up
    with pytest.raises(ChannelRejected, match="during the handshake"):
        b.next_event()


def test_the_responder_refuses_an_untrusted_initiator() -> None:
    a, b = pair(trust_b=lambda peer: f"{peer.short} was revoked")
    deliver(a, b)
    deliver(b, a)
    with pytest.raises(UntrustedPeer) as refused:
        deliver(a, b)
    assert refused.value.reason == f"{ALICE.node_id.short} was revoked"
    assert refused.value.peer == ALICE.node_id
    assert b.data_to_send() == b""  # no READY
    assert a.state is ChannelState.AWAIT_READY
    with pytest.raises(LocalProtocolError):
        a.send(b"too early")
    a.receive_data(b"")
    with pytest.raises(ChannelRejected, match="instead of confirming"):
        a.next_event()


def test_xxpsk3_with_the_same_key() -> None:
    a, b = pair(psk_a=PSK, psk_b=PSK)
    assert len(a.data_to_send()) == 2 + 32 + 16  # psk mode: message 1's empty payload has a tag
    a, b = pair(psk_a=PSK, psk_b=PSK)
    done_a, done_b = handshake(a, b)
    assert done_a.peer == BOB.node_id and done_b.peer == ALICE.node_id
    assert done_a.sas == done_b.sas != handshake(*pair())[0].sas
    assert a._handshake.protocol.name == "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"


def test_xxpsk3_with_different_keys_fails_at_message_3() -> None:
    a, b = pair(psk_a=PSK, psk_b=bytes(32))
    deliver(a, b)
    deliver(b, a)  # the psk only enters at message 3
    with pytest.raises(ChannelRejected, match="different pre-shared key"):
        deliver(a, b)


def test_a_responder_with_several_keys_finds_the_initiators_on_message_3() -> None:
    others = [bytes([n]) * 32 for n in range(1, 5)]
    a, b = pair(psk_a=PSK, psk_b=[*others[:2], PSK, *others[2:]], seed=7)
    done_a, done_b = handshake(a, b)
    assert b.psk == PSK and done_b.peer == ALICE.node_id
    alone_a, _ = handshake(*pair(psk_a=PSK, psk_b=PSK, seed=7))
    assert done_a.sas == done_b.sas == alone_a.sas  # the same handshake as with one key
    a.send(b"hello")
    assert deliver(a, b) == [Message(data=b"hello")]


def test_a_responder_with_several_keys_refuses_a_key_it_does_not_hold() -> None:
    a, b = pair(psk_a=PSK, psk_b=[bytes([n]) * 32 for n in range(1, 4)])
    deliver(a, b)
    deliver(b, a)
    with pytest.raises(ChannelRejected, match="wrong or unknown invite code"):
        deliver(a, b)
    with pytest.raises(ValueError, match="only a responder"):
        SecureChannel(ALICE, initiator=True, trust=accept, psk=[PSK, PSK])


@pytest.mark.parametrize(("psk_a", "psk_b"), [(PSK, None), (None, PSK)])
def test_psk_on_one_side_only_fails_at_once(psk_a: bytes | None, psk_b: bytes | None) -> None:
    a, b = pair(psk_a=psk_a, psk_b=psk_b)
    with pytest.raises(ChannelRejected, match="announced a"):
        deliver(a, b)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="pre-shared key is 32 bytes"):
        SecureChannel(ALICE, initiator=True, trust=accept, psk=b"short")
    with pytest.raises(ValueError, match="max_message_size"):
        SecureChannel(ALICE, initiator=True, trust=accept, max_message_size=0)
    with pytest.raises(ValueError, match="rekey_interval"):
        SecureChannel(ALICE, initiator=True, trust=accept, rekey_interval=0)
    with pytest.raises(ValueError, match="6 decimal digits"):
        HandshakeComplete(peer=ALICE.node_id, sas="12345", handshake_hash=b"h")
    with pytest.raises(ValueError, match="at least one byte"):
        Message(data=b"")


def test_an_orderly_close_is_an_event_and_then_the_end() -> None:
    a, b = pair()
    handshake(a, b)
    a.send(b"last words")
    a.close()
    a.close()  # idempotent
    assert deliver(a, b) == [Message(data=b"last words"), Closed()]
    b.receive_data(b"")
    assert b.next_event() is NEED_DATA and b.state is ChannelState.PEER_CLOSED
    b.send(b"still heard")  # a half-closed peer may still be sent to
    assert messages(deliver(b, a)) == [b"still heard"]
    with pytest.raises(LocalProtocolError, match="after close"):
        a.send(b"more")


def test_a_link_that_just_ends_is_not_a_close() -> None:
    a, b = pair()
    handshake(a, b)
    a.send(b"hello")
    assert messages(deliver(a, b)) == [b"hello"]
    b.receive_data(b"")
    with pytest.raises(ChannelRejected, match="without a close notice"):
        b.next_event()
    with pytest.raises(ChannelRejected, match="already failed: the link ended"):
        b.next_event()
    with pytest.raises(ChannelRejected, match="already failed"):
        b.send(b"x")
    b.close()  # never raises


def test_records_out_of_place_are_refused() -> None:
    def opened() -> tuple[SecureChannel, SecureChannel]:
        a, b = pair()
        handshake(a, b)
        return a, b

    cases = [
        (bytes([9]), "unknown record type 9"),
        (bytes([RecordType.READY]), "READY record is not allowed while open"),
        (bytes([RecordType.CLOSE]) + b"x", "CLOSE record carries 1 unexpected"),
        (bytes([RecordType.MORE]), "empty MORE"),
        (bytes([RecordType.DATA]), "empty message"),
    ]
    for record, reason in cases:
        a, b = opened()
        a._write_record(record)
        with pytest.raises(ChannelRejected, match=reason):
            deliver(a, b)
    a, b = opened()
    a._write_record(bytes([RecordType.MORE]) + b"half")
    a.close()
    with pytest.raises(ChannelRejected, match="middle of a message"):
        deliver(a, b)
    a, b = opened()
    a.close()
    a._write_record(bytes([RecordType.DATA]) + b"after")
    with pytest.raises(ChannelRejected, match="DATA record is not allowed while peer-closed"):
        deliver(a, b)


def test_misuse_is_a_local_error() -> None:
    a, b = pair()
    with pytest.raises(LocalProtocolError, match="while the channel is handshake"):
        a.send(b"early")
    a.close()  # before the handshake: nothing to send, nothing raised
    assert a.data_to_send().startswith(b"\x00\x20")  # only message 1
    b.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the end"):
        b.receive_data(b"x")
    c, d = pair(max_message_size=10)
    handshake(c, d)
    with pytest.raises(LocalProtocolError, match="exceeds max_message_size=10"):
        c.send(bytes(11))


def test_rekeying_is_periodic_and_must_agree() -> None:
    a, b = pair(rekey_interval=3)
    handshake(a, b)
    key = a._sender.k if a._sender else None
    for n in range(20):
        a.send(b"ping %d" % n)
        b.send(b"pong %d" % n)
    assert messages(deliver(a, b)) == [b"ping %d" % n for n in range(20)]
    assert messages(deliver(b, a)) == [b"pong %d" % n for n in range(20)]
    assert a._sender is not None and a._sender.k != key and a._sender.n == 20
    c, d = pair(rekey_interval=1 << 20)
    d._rekey_interval = 3  # the two sides disagree: message 4 cannot decrypt
    handshake(c, d)
    for _ in range(3):
        c.send(b"ok")
    assert len(messages(deliver(c, d))) == 3
    c.send(b"lost")
    with pytest.raises(ChannelRejected, match="transport message 4 does not decrypt"):
        deliver(c, d)
