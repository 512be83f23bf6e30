"""Noise's crypto functions (spec rev. 34, sections 4, 12), registered under their spec names.

Lichen uses ``25519`` (X25519), ``ChaChaPoly`` (ChaCha20-Poly1305, IETF) and
``BLAKE2b``, all from libsodium through PyNaCl and from :mod:`hashlib`. Each
family is a small registry keyed by the name that appears in a protocol name,
so ``Noise_XX_25519_ChaChaPoly_BLAKE2b`` resolves by lookup::

    >>> DH_FUNCTIONS["25519"].dhlen, CIPHER_FUNCTIONS["ChaChaPoly"].name
    (32, 'ChaChaPoly')
    >>> len(HASH_FUNCTIONS["BLAKE2b"].hash(b"abc"))
    64

Another primitive is one class and one registry entry; nothing else changes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError

from .events import ChannelRejected

__all__ = [
    "CIPHER_FUNCTIONS",
    "DH_FUNCTIONS",
    "HASH_FUNCTIONS",
    "MAX_NONCE",
    "X25519",
    "Blake2b",
    "ChaChaPoly",
    "CipherFunctions",
    "DHFunctions",
    "HashFunctions",
    "KeyPair",
    "hkdf",
]

KEY_LEN = 32
TAG_LEN = 16
MAX_NONCE = 2**64 - 1  # reserved: REKEY uses it, and n may never reach it


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A DH key pair; ``private`` is hidden from ``repr``::

    pair = X25519().keypair(bytes(31) + b"\x40")
    pair.public  # 32 bytes
    """

    private: bytes = field(repr=False)
    public: bytes


class DHFunctions(Protocol):
    """``GENERATE_KEYPAIR``, ``DH`` and ``DHLEN`` of spec section 4.1.

    ``keypair(private)`` rebuilds a pair from its private half (test vectors,
    derived static keys)::

        shared = dh.dh(mine.private, theirs.public)  # == dh.dh(theirs.private, mine.public)
    """

    name: ClassVar[str]
    dhlen: ClassVar[int]

    def keypair(self, private: bytes) -> KeyPair: ...

    def generate_keypair(self) -> KeyPair: ...

    def dh(self, private: bytes, public: bytes) -> bytes: ...


class CipherFunctions(Protocol):
    """``ENCRYPT``, ``DECRYPT`` and ``REKEY`` of spec section 4.2 (nonce as an int)::

    ciphertext = cipher.encrypt(key, 0, b"ad", b"plain")   # 16 bytes longer
    cipher.decrypt(key, 0, b"ad", ciphertext)              # b"plain"
    """

    name: ClassVar[str]

    def encrypt(self, key: bytes, nonce: int, ad: bytes, plaintext: bytes) -> bytes: ...

    def decrypt(self, key: bytes, nonce: int, ad: bytes, ciphertext: bytes) -> bytes: ...

    def rekey(self, key: bytes) -> bytes: ...


class HashFunctions(Protocol):
    """``HASH``, ``HASHLEN``, ``BLOCKLEN`` and ``HMAC-HASH`` of spec sections 4.3–4.4::

    digest = hash_fn.hash(b"data")          # hash_fn.hashlen bytes
    mac = hash_fn.hmac(b"key", b"data")     # HMAC over hash_fn.blocklen-byte blocks
    """

    name: ClassVar[str]
    hashlen: ClassVar[int]
    blocklen: ClassVar[int]

    def hash(self, data: bytes) -> bytes: ...

    def hmac(self, key: bytes, data: bytes) -> bytes: ...


class X25519:
    """The ``25519`` DH functions: X25519 of RFC 7748 (libsodium).

    A peer key that yields the all-zero shared secret (a low-order point) is
    refused with :class:`ChannelRejected`, as spec section 12.1 allows::

        >>> dh = X25519()
        >>> a, b = dh.generate_keypair(), dh.generate_keypair()
        >>> dh.dh(a.private, b.public) == dh.dh(b.private, a.public)
        True
    """

    name: ClassVar[str] = "25519"
    dhlen: ClassVar[int] = 32

    def keypair(self, private: bytes) -> KeyPair:
        if len(private) != self.dhlen:
            raise ValueError(f"an X25519 private key is {self.dhlen} bytes, not {len(private)}")
        return KeyPair(bytes(private), crypto_scalarmult_base(bytes(private)))

    def generate_keypair(self) -> KeyPair:
        return self.keypair(os.urandom(self.dhlen))

    def dh(self, private: bytes, public: bytes) -> bytes:
        if len(public) != self.dhlen:
            raise ChannelRejected(f"a 25519 public key is {self.dhlen} bytes, not {len(public)}")
        try:
            return bytes(crypto_scalarmult(private, public))
        except (RuntimeError, CryptoError):
            raise ChannelRejected("the peer's X25519 key is a low-order point") from None


def _chacha_nonce(n: int) -> bytes:
    """96-bit IETF nonce: 32 zero bits, then ``n`` as 64-bit little-endian (spec 12.3)."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


class ChaChaPoly:
    """The ``ChaChaPoly`` cipher functions: ChaCha20-Poly1305 (RFC 8439, libsodium).

    ``decrypt`` raises :class:`ChannelRejected` when the tag does not verify::

        >>> c, key = ChaChaPoly(), bytes(32)
        >>> c.decrypt(key, 7, b"ad", c.encrypt(key, 7, b"ad", b"plain"))
        b'plain'
    """

    name: ClassVar[str] = "ChaChaPoly"

    def encrypt(self, key: bytes, nonce: int, ad: bytes, plaintext: bytes) -> bytes:
        return bytes(
            crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, _chacha_nonce(nonce), key)
        )

    def decrypt(self, key: bytes, nonce: int, ad: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) < TAG_LEN:
            raise ChannelRejected("a ciphertext is shorter than its 16-byte tag")
        try:
            return bytes(
                crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, _chacha_nonce(nonce), key)
            )
        except CryptoError:
            raise ChannelRejected("a message does not decrypt") from None

    def rekey(self, key: bytes) -> bytes:
        """The default REKEY: the first 32 bytes of ``ENCRYPT(k, maxnonce, "", zeros)``."""
        return self.encrypt(key, MAX_NONCE, b"", bytes(KEY_LEN))[:KEY_LEN]


class Blake2b:
    """The ``BLAKE2b`` hash functions: 64-byte BLAKE2b, HMAC over 128-byte blocks::

    >>> len(Blake2b().hmac(b"key", b"data")), Blake2b.blocklen
    (64, 128)
    """

    name: ClassVar[str] = "BLAKE2b"
    hashlen: ClassVar[int] = 64
    blocklen: ClassVar[int] = 128

    def hash(self, data: bytes) -> bytes:
        return hashlib.blake2b(data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, hashlib.blake2b)


def hkdf(
    hash_fn: HashFunctions, chaining_key: bytes, ikm: bytes, num_outputs: int
) -> tuple[bytes, ...]:
    """Noise's ``HKDF(chaining_key, input_key_material, num_outputs)`` (spec 4.3).

    Returns two or three ``HASHLEN``-byte outputs.
    """
    if num_outputs not in (2, 3):
        raise ValueError(f"HKDF gives 2 or 3 outputs, not {num_outputs}")
    temp_key = hash_fn.hmac(chaining_key, ikm)
    outputs: list[bytes] = []
    previous = b""
    for i in range(1, num_outputs + 1):
        previous = hash_fn.hmac(temp_key, previous + bytes([i]))
        outputs.append(previous)
    return tuple(outputs)


DH_FUNCTIONS: dict[str, DHFunctions] = {X25519.name: X25519()}
CIPHER_FUNCTIONS: dict[str, CipherFunctions] = {ChaChaPoly.name: ChaChaPoly()}
HASH_FUNCTIONS: dict[str, HashFunctions] = {Blake2b.name: Blake2b()}
