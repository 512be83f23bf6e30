"""How a Noise session is bound to Lichen node identities, and the 6-digit pairing code.

Noise's static keys are X25519; a node *is* an Ed25519 key. The two are tied
together like this (wire format v1):

* **Static key.** Each node's Noise static key is derived from its Ed25519
  seed: ``BLAKE2b-256(seed, person="lichen-noise-s")``, clamped per RFC 7748.
  Deterministic, so it never needs storing, and one-way, so it reveals nothing
  about the signing key.
* **Identity proof.** The handshake payload of XX message 2 (responder) and
  message 3 (initiator) is exactly 96 bytes: the node's Ed25519 public key
  (32) followed by its Ed25519 signature (64) of
  ``"lichen/channel/v1" 0x00 || h``, where ``h`` is the Noise handshake hash at
  the moment that payload is encrypted. That ``h`` already covers the prologue,
  both ephemeral keys and the sender's encrypted static key (and, for
  XXpsk3, the pre-shared key), so the signature says "this node owns this
  static key in this session" and cannot be replayed into another session or
  moved to the other message. Message 1's payload is empty.
* **Prologue** ``"lichen/channel/v1"``; protocol ``Noise_XX_25519_ChaChaPoly_BLAKE2b``,
  or ``Noise_XXpsk3_…`` with a 32-byte pre-shared key.
* **Short authentication string.** ``BLAKE2b-64(h_final, person="lichen-sas")``
  read as a big-endian integer, mod 10**6, zero-padded to 6 digits.

Example::

    >>> h = bytes(64)
    >>> me = Identity(bytes(32))
    >>> check_identity_proof(make_identity_proof(me, h), h, message=2) == me.node_id
    True
    >>> len(short_authentication_string(h))
    6
"""

from __future__ import annotations

import hashlib

from ..identity import Identity, NodeId, verify_signature
from .events import SAS_DIGITS, ChannelRejected
from .primitives import X25519, KeyPair

__all__ = [
    "PROLOGUE",
    "PROOF_LEN",
    "PROTOCOL_NAME",
    "PSK_LEN",
    "PSK_PROTOCOL_NAME",
    "SIGNATURE_DOMAIN",
    "check_identity_proof",
    "make_identity_proof",
    "short_authentication_string",
    "static_keypair",
]

PROLOGUE = b"lichen/channel/v1"
SIGNATURE_DOMAIN = b"lichen/channel/v1"
PROTOCOL_NAME = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
PSK_PROTOCOL_NAME = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
PSK_LEN = 32
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
PROOF_LEN = PUBLIC_KEY_LEN + SIGNATURE_LEN

_STATIC_PERSON = b"lichen-noise-s"
_SAS_PERSON = b"lichen-sas"


def static_keypair(identity: Identity) -> KeyPair:
    """The node's Noise static X25519 key pair, derived from its Ed25519 seed."""
    scalar = bytearray(
        hashlib.blake2b(identity.seed, digest_size=32, person=_STATIC_PERSON).digest()
    )
    scalar[0] &= 248
    scalar[31] &= 127
    scalar[31] |= 64
    return X25519().keypair(bytes(scalar))


def _signed_message(handshake_hash: bytes) -> bytes:
    return SIGNATURE_DOMAIN + b"\x00" + handshake_hash


def make_identity_proof(identity: Identity, handshake_hash: bytes) -> bytes:
    """The 96-byte payload proving ``identity`` owns this session's static key."""
    return identity.node_id.key + identity.sign(_signed_message(handshake_hash))


def check_identity_proof(payload: bytes, handshake_hash: bytes, *, message: int) -> NodeId:
    """Return the node id an identity proof proves, or raise :class:`ChannelRejected`.

    ``message`` is the handshake message number (2 or 3), for the reason.
    """
    where = f"handshake message {message}"
    if len(payload) != PROOF_LEN:
        raise ChannelRejected(
            f"{where} carries a {len(payload)}-byte identity proof; a proof is {PROOF_LEN} bytes"
        )
    key, signature = payload[:PUBLIC_KEY_LEN], payload[PUBLIC_KEY_LEN:]
    node = NodeId(bytes(key))
    if not verify_signature(node.key, _signed_message(handshake_hash), signature):
        raise ChannelRejected(
            f"{where}: {node}'s signature does not cover this session's handshake "
            "(forged, or replayed from another session)"
        )
    return node


def short_authentication_string(handshake_hash: bytes) -> str:
    """Six decimal digits from the final handshake hash; equal on both sides of one session."""
    digest = hashlib.blake2b(handshake_hash, digest_size=8, person=_SAS_PERSON).digest()
    return str(int.from_bytes(digest, "big") % 10**SAS_DIGITS).zfill(SAS_DIGITS)
