"""The Noise state objects of spec rev. 34, section 5: CipherState, SymmetricState, HandshakeState.

They follow the spec's pseudo-code function by function (``InitializeKey``,
``MixKey``, ``WriteMessage``…), in snake case, with no I/O: bytes in, bytes out.
A complete XX handshake between two in-memory parties::

    >>> p = NoiseProtocol.from_name("Noise_XX_25519_ChaChaPoly_BLAKE2b")
    >>> i = HandshakeState(p, initiator=True, s=p.dh.generate_keypair())
    >>> r = HandshakeState(p, initiator=False, s=p.dh.generate_keypair())
    >>> r.read_message(i.write_message(b""))
    b''
    >>> i.read_message(r.write_message(b"")); r.read_message(i.write_message(b"hi"))
    b''
    b'hi'
    >>> i.handshake_hash == r.handshake_hash and i.complete and r.complete
    True

Failures the peer causes (a short message, a bad tag) raise
:class:`~agent.channel.events.ChannelRejected`; calls out of turn raise
:class:`~agent.errors.LocalProtocolError`. Ephemeral keys can be injected
(``e=``) so the published test vectors reproduce byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ChannelError, LocalProtocolError
from .events import ChannelRejected
from .patterns import NoiseProtocol
from .primitives import KEY_LEN, MAX_NONCE, TAG_LEN, CipherFunctions, KeyPair, hkdf

__all__ = ["MAX_MESSAGE_LEN", "CipherState", "HandshakeState", "SymmetricState"]

MAX_MESSAGE_LEN = 65535  # spec section 3: every Noise message
PayloadMaker = Callable[[bytes], bytes]
"""Builds a handshake payload from ``h`` at the moment the payload is encrypted."""


class CipherState:
    """A cipher key ``k`` (or none yet) and a 64-bit nonce ``n`` (spec 5.1).

    Each transport direction has one; every ``encrypt_with_ad`` uses the next
    nonce. ``n`` may never reach 2**64-1: the call that would use it raises
    :class:`~agent.errors.ChannelError` (open a new channel instead)::

        sender, receiver = CipherState(cipher, key), CipherState(cipher, key)
        receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"hi"))  # b"hi"
    """

    __slots__ = ("_cipher", "k", "n")

    def __init__(self, cipher: CipherFunctions, key: bytes | None = None) -> None:
        self._cipher = cipher
        self.k: bytes | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        if key is not None and len(key) != KEY_LEN:
            raise ValueError(f"a cipher key is {KEY_LEN} bytes, not {len(key)}")
        self.k = key
        self.n = 0

    def has_key(self) -> bool:
        return self.k is not None

    def set_nonce(self, nonce: int) -> None:
        if not 0 <= nonce <= MAX_NONCE:
            raise ValueError("a nonce is a 64-bit unsigned integer")
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        return self._with_nonce(self._cipher.encrypt, ad, plaintext)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt, or raise :class:`ChannelRejected` leaving ``n`` unchanged."""
        return self._with_nonce(self._cipher.decrypt, ad, ciphertext)

    def _with_nonce(
        self, op: Callable[[bytes, int, bytes, bytes], bytes], ad: bytes, data: bytes
    ) -> bytes:
        """``op(k, n, ad, data)``, then the next nonce; ``data`` as it is while
        there is no key (spec 5.1)."""
        if self.k is None:
            return data
        if self.n >= MAX_NONCE:
            raise ChannelError("the channel's nonces are exhausted; open a new channel")
        out = op(self.k, self.n, ad, data)
        self.n += 1
        return out

    def rekey(self) -> None:
        """``k = REKEY(k)``; ``n`` is kept (spec 11.3)."""
        if self.k is None:
            raise LocalProtocolError("cannot rekey a CipherState that has no key")
        self.k = self._cipher.rekey(self.k)


class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and a CipherState (spec 5.2).

    Created by ``InitializeSymmetric(protocol_name)``; owned by a
    :class:`HandshakeState`, which is the only caller::

        >>> sym = SymmetricState(NoiseProtocol.from_name("Noise_XX_25519_ChaChaPoly_BLAKE2b"))
        >>> sym.h[:12], sym.ck == sym.h       # a short name is padded, not hashed
        (b'Noise_XX_255', True)
    """

    __slots__ = ("_protocol", "cipher_state", "ck", "h")

    def __init__(self, protocol: NoiseProtocol) -> None:
        self._protocol = protocol
        name = protocol.name.encode("ascii")
        hashlen = protocol.hash.hashlen
        self.h = name.ljust(hashlen, b"\x00") if len(name) <= hashlen else self._hash(name)
        self.ck = self.h
        self.cipher_state = CipherState(protocol.cipher)

    def _hash(self, data: bytes) -> bytes:
        return self._protocol.hash.hash(data)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self._protocol.hash, self.ck, ikm, 2)
        self.cipher_state.initialize_key(temp_k[:KEY_LEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = self._hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self._protocol.hash, self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = hkdf(self._protocol.hash, self.ck, b"", 2)
        cipher = self._protocol.cipher
        return CipherState(cipher, temp_k1[:KEY_LEN]), CipherState(cipher, temp_k2[:KEY_LEN])


class HandshakeState:
    """One party's side of a Noise handshake (spec 5.3), message by message.

    ``write_message`` and ``read_message`` alternate as the pattern says;
    ``my_turn`` tells which is next. A payload may be a function of ``h``
    (``payload_hash``), which is how Lichen signs the transcript. Once
    ``complete``, :meth:`transport_ciphers` gives this party's (send, receive)
    CipherStates::

        hs = HandshakeState(protocol, initiator=True, s=static, prologue=b"app/v1")
        first = hs.write_message(b"")          # -> the peer
        payload = hs.read_message(reply)       # <- the peer
    """

    def __init__(
        self,
        protocol: NoiseProtocol,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        psks: Sequence[bytes] = (),
    ) -> None:
        self.protocol = protocol
        self.initiator = initiator
        self.s, self.e = s, e
        self.rs: bytes | None = None
        self.re: bytes | None = None
        psk_count = sum(m.count("psk") for m in protocol.pattern.messages)
        if len(psks) != psk_count or any(len(p) != KEY_LEN for p in psks):
            raise ValueError(f"{protocol.name} needs {psk_count} pre-shared keys of 32 bytes")
        self._psks = list(psks)
        self._symmetric = SymmetricState(protocol)
        self._symmetric.mix_hash(prologue)
        self._index = 0
        self._ciphers: tuple[CipherState, CipherState] | None = None
        self.payload_hash = b""

    @property
    def message_index(self) -> int:
        """How many handshake messages have been written or read so far."""
        return self._index

    @property
    def complete(self) -> bool:
        return self._ciphers is not None

    @property
    def my_turn(self) -> bool:
        """True if the next handshake message is ours to write."""
        return not self.complete and (self._index % 2 == 0) == self.initiator

    @property
    def handshake_hash(self) -> bytes:
        """``GetHandshakeHash()``: the current ``h`` (final once complete)."""
        return self._symmetric.h

    def transport_ciphers(self) -> tuple[CipherState, CipherState]:
        """(send, receive) CipherStates for this party, after the last message."""
        if self._ciphers is None:
            raise LocalProtocolError("the handshake is not complete")
        c1, c2 = self._ciphers
        return (c1, c2) if self.initiator else (c2, c1)

    def next_message_length(self, payload_len: int) -> int:
        """The exact length of the next message if its payload is ``payload_len`` bytes."""
        has_key = self._symmetric.cipher_state.has_key()
        length = 0
        for token in self.protocol.pattern.messages[self._index]:
            if token == "e":
                length += self.protocol.dh.dhlen
                has_key = has_key or self.protocol.pattern.uses_psk
            elif token == "s":
                length += self.protocol.dh.dhlen + (TAG_LEN if has_key else 0)
            else:
                has_key = True
        return length + payload_len + (TAG_LEN if has_key else 0)

    def _dh(self, token: str) -> bytes:
        local_static = token in ("se", "ss") if self.initiator else token in ("es", "ss")
        remote_static = token in ("es", "ss") if self.initiator else token in ("se", "ss")
        local = self.s if local_static else self.e
        remote = self.rs if remote_static else self.re
        if local is None or remote is None:
            raise LocalProtocolError(f"token {token!r} needs a key this party does not have")
        return self.protocol.dh.dh(local.private, remote)

    def _next_psk(self) -> bytes:
        return self._psks.pop(0)

    def _finish_message(self) -> None:
        self._index += 1
        if self._index == len(self.protocol.pattern.messages):
            self._ciphers = self._symmetric.split()

    def write_message(self, payload: bytes | PayloadMaker) -> bytes:
        """``WriteMessage``: process our tokens, then encrypt ``payload`` (or
        ``payload(h)``) and return the whole handshake message."""
        if not self.my_turn:
            raise LocalProtocolError("it is not our turn to write a handshake message")
        sym, dh = self._symmetric, self.protocol.dh
        out = bytearray()
        for token in self.protocol.pattern.messages[self._index]:
            if token == "e":
                if self.e is None:
                    self.e = dh.generate_keypair()
                out += self.e.public
                sym.mix_hash(self.e.public)
                if self.protocol.pattern.uses_psk:
                    sym.mix_key(self.e.public)
            elif token == "s":
                if self.s is None:
                    raise LocalProtocolError(f"{self.protocol.name} needs a static key")
                out += sym.encrypt_and_hash(self.s.public)
            elif token == "psk":
                sym.mix_key_and_hash(self._next_psk())
            else:
                sym.mix_key(self._dh(token))
        self.payload_hash = sym.h
        body = payload(sym.h) if callable(payload) else payload
        out += sym.encrypt_and_hash(body)
        if len(out) > MAX_MESSAGE_LEN:
            raise LocalProtocolError(f"a handshake message is at most {MAX_MESSAGE_LEN} bytes")
        self._finish_message()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """``ReadMessage``: process the peer's tokens and return the decrypted payload.

        ``payload_hash`` is then ``h`` as it was when the payload was encrypted.
        """
        if self.complete or self.my_turn:
            raise LocalProtocolError("it is not our turn to read a handshake message")
        number = self._index + 1
        if len(message) > MAX_MESSAGE_LEN:
            raise ChannelRejected(f"handshake message {number} is longer than 65535 bytes")
        sym, dhlen = self._symmetric, self.protocol.dh.dhlen
        view = memoryview(message)
        for token in self.protocol.pattern.messages[self._index]:
            if token in ("e", "s"):
                size = dhlen + (TAG_LEN if token == "s" and sym.cipher_state.has_key() else 0)
                if len(view) < size:
                    raise ChannelRejected(f"handshake message {number} is too short")
                chunk, view = bytes(view[:size]), view[size:]
                if token == "e":
                    self.re = chunk
                    sym.mix_hash(chunk)
                    if self.protocol.pattern.uses_psk:
                        sym.mix_key(chunk)
                else:
                    self.rs = self._decrypt(sym, chunk, number, "static key")
            elif token == "psk":
                sym.mix_key_and_hash(self._next_psk())
            else:
                sym.mix_key(self._dh(token))
        self.payload_hash = sym.h
        payload = self._decrypt(sym, bytes(view), number, "payload")
        self._finish_message()
        return payload

    @staticmethod
    def _decrypt(sym: SymmetricState, data: bytes, number: int, what: str) -> bytes:
        try:
            return sym.decrypt_and_hash(data)
        except ChannelRejected:
            raise ChannelRejected(
                f"handshake message {number}: the {what} does not decrypt "
                "(tampered, or a different pre-shared key)"
            ) from None
