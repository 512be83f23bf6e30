"""The Noise core against the published test vectors, and the spec's rules around it."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agent.channel
from agent.channel import binding, connection, events, framing, noise, patterns, primitives
from agent.channel.events import ChannelRejected
from agent.channel.noise import CipherState, HandshakeState
from agent.channel.patterns import HandshakePattern, NoiseProtocol, apply_modifiers
from agent.channel.primitives import MAX_NONCE, ChaChaPoly
from agent.errors import ChannelError, LocalProtocolError

VECTOR_FILE = Path(__file__).parent / "vectors" / "noise" / "vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTOR_FILE.read_text("utf-8"))
XX = "Noise_XX_25519_ChaChaPoly_BLAKE2b"


def _party(protocol: NoiseProtocol, v: dict[str, Any], side: str) -> HandshakeState:
    def key(name: str) -> bytes:
        return bytes.fromhex(v[f"{side}_{name}"])

    return HandshakeState(
        protocol,
        initiator=side == "init",
        prologue=key("prologue"),
        s=protocol.dh.keypair(key("static")),
        e=protocol.dh.keypair(key("ephemeral")),
        psks=[bytes.fromhex(p) for p in v[f"{side}_psks"]],
    )


def test_the_vector_file_names_its_sources() -> None:
    sources = VECTORS["sources"]
    assert {s["repository"] for s in sources} >= {"haskell-cryptography/cacophony", "mcginty/snow"}
    for source in sources:
        assert len(source["commit"]) == 40 and source["path"] and source["vectors"] >= 1
    names = {v["protocol_name"] for v in VECTORS["vectors"]}
    assert {XX, "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"} <= names
    assert sum(s["vectors"] for s in sources) == len(VECTORS["vectors"]) >= 8


@pytest.mark.parametrize(
    "v",
    VECTORS["vectors"],
    ids=[f"{i}-{v['protocol_name']}" for i, v in enumerate(VECTORS["vectors"])],
)
def test_published_vector(v: dict[str, Any]) -> None:
    """Every handshake message byte for byte, the handshake hash, then the
    transport messages in both directions, decrypted by the other party."""
    protocol = NoiseProtocol.from_name(v["protocol_name"])
    initiator, responder = _party(protocol, v, "init"), _party(protocol, v, "resp")
    handshake_len = len(protocol.pattern.messages)
    for index, message in enumerate(v["messages"]):
        payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
        sender, receiver = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        if index < handshake_len:
            assert sender.my_turn and not receiver.my_turn
            assert sender.next_message_length(len(payload)) == len(expected)
            assert sender.write_message(payload) == expected, f"handshake message {index + 1}"
            assert receiver.read_message(expected) == payload
        else:
            send = sender.transport_ciphers()[0]
            receive = receiver.transport_ciphers()[1]
            assert send.encrypt_with_ad(b"", payload) == expected, f"transport message {index}"
            assert receive.decrypt_with_ad(b"", expected) == payload
    assert initiator.complete and responder.complete
    assert initiator.handshake_hash == responder.handshake_hash
    if v["handshake_hash"] is not None:
        assert initiator.handshake_hash.hex() == v["handshake_hash"]
    assert initiator.rs == protocol.dh.keypair(bytes.fromhex(v["resp_static"])).public
    assert responder.rs == protocol.dh.keypair(bytes.fromhex(v["init_static"])).public
    assert len(v["messages"]) > handshake_len  # transport messages were checked too


def test_psk_modifiers_place_the_token_per_the_spec() -> None:
    xx = patterns.PATTERNS["XX"]
    assert apply_modifiers(xx, ("psk0",)).messages[0] == ("psk", "e")
    assert apply_modifiers(xx, ("psk1",)).messages[0] == ("e", "psk")
    assert apply_modifiers(xx, ("psk2",)).messages[1] == ("e", "ee", "s", "es", "psk")
    modified = apply_modifiers(xx, ("psk0", "psk3"))
    assert modified.name == "XXpsk0+psk3" and modified.messages[2] == ("s", "se", "psk")
    with pytest.raises(ValueError, match="needs 4 messages"):
        apply_modifiers(xx, ("psk4",))
    with pytest.raises(ValueError, match="unsupported pattern modifier"):
        apply_modifiers(xx, ("fallback",))
    # The responder would encrypt after the psk without having sent an ephemeral key.
    with pytest.raises(ValueError, match="validity rule"):
        apply_modifiers(HandshakePattern("T", (("e",), ("ee",))), ("psk1",))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Noise_IK_25519_ChaChaPoly_BLAKE2b", "unsupported pattern 'IK'"),
        ("Noise_XX_448_ChaChaPoly_BLAKE2b", "unsupported DH '448'"),
        ("Noise_XX_25519_AESGCM_BLAKE2b", "unsupported cipher 'AESGCM'"),
        ("Noise_XX_25519_ChaChaPoly_SHA256", "unsupported hash 'SHA256'"),
        ("Noise_XXfallback_25519_ChaChaPoly_BLAKE2b", "unsupported pattern modifier"),
        ("NoisePSK_XX_25519_ChaChaPoly_BLAKE2b", "not a Noise protocol name"),
    ],
)
def test_unsupported_protocol_names_say_which_part(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        NoiseProtocol.from_name(name)


def test_a_psk_pattern_wants_exactly_its_keys() -> None:
    protocol = NoiseProtocol.from_name("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b")
    with pytest.raises(ValueError, match="needs 1 pre-shared keys"):
        HandshakeState(protocol, initiator=True)
    with pytest.raises(ValueError, match="needs 1 pre-shared keys"):
        HandshakeState(protocol, initiator=True, psks=[b"short"])


def test_handshake_calls_out_of_turn_are_local_errors() -> None:
    protocol = NoiseProtocol.from_name(XX)
    hs = HandshakeState(protocol, initiator=False, s=protocol.dh.generate_keypair())
    with pytest.raises(LocalProtocolError):
        hs.write_message(b"")
    with pytest.raises(LocalProtocolError):
        hs.transport_ciphers()
    no_static = HandshakeState(protocol, initiator=True)
    responder = HandshakeState(protocol, initiator=False, s=protocol.dh.generate_keypair())
    responder.read_message(no_static.write_message(b""))
    no_static.read_message(responder.write_message(b""))
    with pytest.raises(LocalProtocolError, match="static key"):
        no_static.write_message(b"")


def test_short_and_low_order_handshake_messages_are_rejected() -> None:
    protocol = NoiseProtocol.from_name(XX)
    responder = HandshakeState(protocol, initiator=False, s=protocol.dh.generate_keypair())
    with pytest.raises(ChannelRejected, match="too short"):
        responder.read_message(b"\x01" * 31)
    responder = HandshakeState(protocol, initiator=False, s=protocol.dh.generate_keypair())
    responder.read_message(bytes(32))  # an all-zero ephemeral is only caught at the DH
    with pytest.raises(ChannelRejected, match="low-order"):
        responder.write_message(b"")


def test_cipherstate_refuses_the_reserved_nonce() -> None:
    key = bytes(range(32))
    sender, receiver = CipherState(ChaChaPoly(), key), CipherState(ChaChaPoly(), key)
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"last")) == b"last"
    with pytest.raises(ChannelError, match="exhausted"):
        sender.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(ChannelError, match="exhausted"):
        receiver.decrypt_with_ad(b"", bytes(17))
    with pytest.raises(ValueError):
        sender.set_nonce(2**64)


def test_rekey_follows_the_spec_default_and_keeps_the_nonce() -> None:
    key = bytes(range(32))
    cipher = ChaChaPoly()
    state = CipherState(cipher, key)
    state.encrypt_with_ad(b"", b"x")
    state.rekey()
    assert state.k == cipher.encrypt(key, MAX_NONCE, b"", bytes(32))[:32] != key
    assert state.n == 1
    with pytest.raises(LocalProtocolError):
        CipherState(cipher).rekey()
    assert CipherState(cipher).encrypt_with_ad(b"ad", b"plain") == b"plain"  # no key yet


@given(key=st.binary(min_size=32, max_size=32), ad=st.binary(max_size=80), data=st.binary())
def test_cipherstate_round_trip_and_every_bit_flip_is_caught(
    key: bytes, ad: bytes, data: bytes
) -> None:
    sender, receiver = CipherState(ChaChaPoly(), key), CipherState(ChaChaPoly(), key)
    ciphertext = sender.encrypt_with_ad(ad, data)
    assert len(ciphertext) == len(data) + 16
    for position in {0, len(ciphertext) // 2, len(ciphertext) - 1}:
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x01
        with pytest.raises(ChannelRejected):
            receiver.decrypt_with_ad(ad, bytes(tampered))
        assert receiver.n == 0  # a failed decryption does not advance the nonce
    assert receiver.decrypt_with_ad(ad, ciphertext) == data and receiver.n == 1


def test_hkdf_matches_its_definition() -> None:
    blake = primitives.Blake2b()
    ck, ikm = b"\x01" * 64, b"input"
    temp = blake.hmac(ck, ikm)
    first = blake.hmac(temp, b"\x01")
    assert primitives.hkdf(blake, ck, ikm, 3) == (
        first,
        second := blake.hmac(temp, first + b"\x02"),
        blake.hmac(temp, second + b"\x03"),
    )
    with pytest.raises(ValueError):
        primitives.hkdf(blake, ck, ikm, 4)


@pytest.mark.parametrize(
    "module",
    [agent.channel, binding, connection, events, framing, noise, patterns, primitives],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module: Any) -> None:
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0


def test_every_truncation_of_every_handshake_message_is_rejected() -> None:
    """A handshake message cut at any byte boundary (and delivered as if whole) is
    a ChannelRejected naming the message, in XX and in XXpsk3."""
    for v in VECTORS["vectors"][:2]:  # cacophony's XX and XXpsk3
        protocol = NoiseProtocol.from_name(v["protocol_name"])
        for number in range(1, len(protocol.pattern.messages) + 1):
            whole = bytes.fromhex(v["messages"][number - 1]["ciphertext"])
            for length in range(len(whole)):
                initiator, responder = _party(protocol, v, "init"), _party(protocol, v, "resp")
                for index, message in enumerate(v["messages"][: number - 1]):
                    pair = (initiator, responder) if index % 2 == 0 else (responder, initiator)
                    sender, receiver = pair
                    receiver.read_message(sender.write_message(bytes.fromhex(message["payload"])))
                receiver = responder if number % 2 else initiator
                if number == 1 and not protocol.pattern.uses_psk and length >= 32:
                    # XX message 1 has no key yet: its payload is plaintext, so Noise
                    # cannot notice; the channel fixes its length (empty payload).
                    assert receiver.read_message(whole[:length]) == whole[32:length]
                    continue
                with pytest.raises(ChannelRejected, match=f"handshake message {number}"):
                    receiver.read_message(whole[:length])
