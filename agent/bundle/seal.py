"""Sealed bundles: content only the cloud it is sealed to can read.

A node's X25519 key is derived from its Ed25519 identity (libsodium's
``crypto_sign_ed25519_pk_to_curve25519``), so a cloud's node id is all an
exporter needs. The bundle's random 32-byte content key travels in an X25519
sealed box (libsodium ``crypto_box_seal``: an ephemeral key pair, the nonce
BLAKE2b-192 of both public keys); each chunk is an XSalsa20-Poly1305 secret
box (``crypto_secretbox``) whose nonce is the chunk's number and whether it
is the last, so a reordered, dropped, truncated or altered chunk does not open.

PyNaCl is imported when a bundle is sealed or opened, not before.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from ..identity import NodeId
from .format import SEALED_KEY_LEN, BundleError

if TYPE_CHECKING:
    from ..identity import Identity

__all__ = [
    "KEY_LEN",
    "Opener",
    "chunk_nonce",
    "open_chunk",
    "seal_chunk",
    "seal_content_key",
    "x25519_public",
]

KEY_LEN = 32
MAC_LEN = 16


def x25519_public(ed25519_public: bytes) -> bytes:
    """The X25519 public key of a node, from its Ed25519 key (its node id)."""
    from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
    from nacl.exceptions import RuntimeError as NaclRuntimeError

    try:
        return bytes(crypto_sign_ed25519_pk_to_curve25519(ed25519_public))
    except (NaclRuntimeError, ValueError):  # a small-order or invalid point
        raise BundleError(
            f"{NodeId(ed25519_public)} has no X25519 key (not a valid Ed25519 point)"
        ) from None


def seal_content_key(
    content_key: bytes, recipient: bytes, ephemeral_secret: bytes | None = None
) -> bytes:
    """``content_key`` in a sealed box for the node whose Ed25519 key is ``recipient``:
    exactly libsodium's ``crypto_box_seal``. ``ephemeral_secret`` makes it
    deterministic (test vectors only); by default it is random."""
    from nacl.bindings import crypto_box, crypto_scalarmult_base

    target = x25519_public(recipient)
    secret = ephemeral_secret if ephemeral_secret is not None else os.urandom(KEY_LEN)
    ephemeral = bytes(crypto_scalarmult_base(secret))
    nonce = hashlib.blake2b(ephemeral + target, digest_size=24).digest()
    sealed = ephemeral + bytes(crypto_box(content_key, nonce, target, secret))
    assert len(sealed) == SEALED_KEY_LEN
    return sealed


def chunk_nonce(index: int, final: bool) -> bytes:
    """The 24-byte nonce of chunk ``index``: its number (u64 big-endian), then
    1 for the last chunk or 0, then zeros. Each bundle has its own key."""
    return index.to_bytes(8, "big") + (b"\x01" if final else b"\x00") + bytes(15)


def seal_chunk(content_key: bytes, index: int, final: bool, plaintext: bytes) -> bytes:
    """MAC (16 bytes) then ciphertext: libsodium's combined ``crypto_secretbox``."""
    from nacl.bindings import crypto_secretbox

    return bytes(crypto_secretbox(plaintext, chunk_nonce(index, final), content_key))


def open_chunk(content_key: bytes, index: int, final: bool, sealed: bytes) -> bytes:
    from nacl.bindings import crypto_secretbox_open
    from nacl.exceptions import CryptoError

    try:
        return bytes(crypto_secretbox_open(sealed, chunk_nonce(index, final), content_key))
    except CryptoError:
        last = " (marked last)" if final else ""
        raise BundleError(
            f"chunk {index}{last} does not decrypt: the bundle is corrupt, truncated or "
            "its chunks were reordered"
        ) from None


class Opener:
    """What a node needs to open bundles sealed to it: its Ed25519 identity, as X25519."""

    def __init__(self, identity: Identity) -> None:
        from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519, crypto_sign_seed_keypair

        public, secret = crypto_sign_seed_keypair(identity.seed)
        self.node_id = identity.node_id
        self._secret = bytes(crypto_sign_ed25519_sk_to_curve25519(secret))
        self._public = x25519_public(bytes(public))

    def content_key(self, recipient: bytes, sealed_key: bytes) -> bytes:
        """Open a header's sealed content key; refuse one sealed to another node."""
        from nacl.bindings import crypto_box_seal_open
        from nacl.exceptions import CryptoError

        if recipient != self.node_id.key:
            raise BundleError(
                f"the bundle is sealed to {NodeId(recipient)}, not to this node "
                f"({self.node_id}): only that node can import it"
            )
        try:
            key = bytes(crypto_box_seal_open(sealed_key, self._public, self._secret))
        except CryptoError:
            raise BundleError(
                "the bundle's content key does not open with this node's key: the header is "
                "corrupt or forged"
            ) from None
        if len(key) != KEY_LEN:
            raise BundleError("the bundle's content key is not 32 bytes")
        return key
