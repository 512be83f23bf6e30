"""Identity binding under attack: a relaying man in the middle, proofs moved
between messages, and trust hooks that refuse without words or raise."""

from __future__ import annotations

import pytest

from agent.channel import (
    PROLOGUE,
    ChannelRejected,
    ChannelState,
    HandshakeState,
    NoiseProtocol,
    UntrustedPeer,
    static_keypair,
)
from agent.channel.binding import PROTOCOL_NAME, check_identity_proof, make_identity_proof
from agent.identity import NodeId

from .test_channel_sansio import ALICE, BOB, MALLORY, deliver, feed, pair


def _frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def _mallory(initiator: bool) -> HandshakeState:
    protocol = NoiseProtocol.from_name(PROTOCOL_NAME)
    return HandshakeState(
        protocol, initiator=initiator, prologue=PROLOGUE, s=static_keypair(MALLORY)
    )


def test_a_relaying_man_in_the_middle_cannot_pass_either_proof_on() -> None:
    """Mallory sits between Alice and Bob with her own keys and hands each genuine
    identity proof to the other side. Each proof signs the handshake hash of the
    session it was made in, so both are refused."""
    # Message 2: Mallory dials Bob, takes his proof, and answers Alice with it.
    a, b = pair()
    facing_alice, facing_bob = _mallory(initiator=False), _mallory(initiator=True)
    facing_alice.read_message(a.data_to_send()[2:])
    feed(b, _frame(facing_bob.write_message(b"")))
    bobs_proof = facing_bob.read_message(b.data_to_send()[2:])
    assert bobs_proof[:32] == BOB.node_id.key
    with pytest.raises(ChannelRejected, match=r"message 2: .* replayed from another session"):
        feed(a, _frame(facing_alice.write_message(lambda h: bobs_proof)))
    assert a.state is ChannelState.FAILED and a.peer is None and a.data_to_send() == b""
    # Message 3: an Alice who accepts anyone sends Mallory her proof; Bob refuses it.
    alice, _ = pair()
    facing_alice = _mallory(initiator=False)
    facing_alice.read_message(alice.data_to_send()[2:])
    feed(alice, _frame(facing_alice.write_message(lambda h: make_identity_proof(MALLORY, h))))
    alices_proof = facing_alice.read_message(alice.data_to_send()[2:])
    assert alices_proof[:32] == ALICE.node_id.key
    with pytest.raises(ChannelRejected, match=r"message 3: .* replayed from another session"):
        feed(b, _frame(facing_bob.write_message(lambda h: alices_proof)))
    assert b.state is ChannelState.FAILED and b.peer is None and b.data_to_send() == b""


def test_a_proof_cannot_move_to_the_other_message_of_the_same_session() -> None:
    """Bob's message-2 proof, echoed back in message 3 of the same session, does
    not verify: the handshake hash has moved on by then."""
    protocol = NoiseProtocol.from_name(PROTOCOL_NAME)
    dialer = _mallory(initiator=True)
    bob = HandshakeState(protocol, initiator=False, prologue=PROLOGUE, s=static_keypair(BOB))
    bob.read_message(dialer.write_message(b""))
    bobs_proof = dialer.read_message(bob.write_message(lambda h: make_identity_proof(BOB, h)))
    assert check_identity_proof(bobs_proof, dialer.payload_hash, message=2) == BOB.node_id
    echoed = bob.read_message(dialer.write_message(bobs_proof))
    with pytest.raises(ChannelRejected, match="handshake message 3"):
        check_identity_proof(echoed, bob.payload_hash, message=3)


def test_a_refusal_without_words_still_gives_a_reason() -> None:
    a, b = pair(trust_a=lambda peer: "")
    deliver(a, b)
    with pytest.raises(UntrustedPeer) as refused:
        deliver(b, a)
    assert refused.value.reason == "refused by the trust decision"
    assert str(refused.value) == f"peer {BOB.node_id} refused: refused by the trust decision"


def test_a_trust_hook_that_raises_fails_the_channel() -> None:
    def broken(peer: NodeId) -> str | None:
        raise KeyError("peer book unavailable")

    a, b = pair(trust_b=broken)
    deliver(a, b)
    deliver(b, a)
    with pytest.raises(KeyError):
        deliver(a, b)
    assert b.state is ChannelState.FAILED and b.peer is None and b.data_to_send() == b""
    with pytest.raises(ChannelRejected, match=r"already failed: the trust decision .* raised"):
        b.next_event()
