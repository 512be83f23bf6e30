"""Node identity: an Ed25519 key pair. The public key *is* the node's name.

A node id is printed as ``lc1`` followed by the lowercase RFC 4648 base32 of the
32-byte public key and a 2-byte BLAKE2b checksum (55 characters), so a mistyped
id is refused instead of naming a stranger (the exact encoding, with a worked
example: docs/format.md, "Node ids")::

    >>> ident = Identity.generate()
    >>> NodeId.parse(str(ident.node_id)) == ident.node_id
    True

The *fingerprint* (``abcd-efgh``) is a short, human-comparable digest for logs
and screens; it is not a security check (pairing uses the channel's 6-digit code).

The secret key file is a small TOML file written atomically with mode 0600.
:func:`load_identity` refuses a file that is missing, unreadable, readable by
group or others, or corrupt — with a message that says which and how to fix it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from .errors import IdentityError
from .fsutil import atomic_write

__all__ = ["Identity", "NodeId", "load_identity", "save_identity", "verify_signature"]

PREFIX = "lc1"
_KEY_LEN = 32
_CHECK_LEN = 2
_ID_LEN = len(PREFIX) + 55


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    pad = "=" * (-len(text) % 8)
    return base64.b32decode(text.upper() + pad)


def _checksum(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=_CHECK_LEN, person=b"lichen-node-id").digest()


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """The public half of an identity: 32 raw Ed25519 public-key bytes."""

    key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != _KEY_LEN:
            raise ValueError("a node id is exactly 32 public-key bytes")

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Parse ``lc1…``; raise :class:`ValueError` saying what is wrong with it."""
        text = text.strip()
        if not text.startswith(PREFIX):
            raise ValueError(f"node id {text!r} does not start with {PREFIX!r}")
        if len(text) != _ID_LEN:
            raise ValueError(
                f"node id {text!r} has {len(text)} characters; a node id has {_ID_LEN}"
            )
        try:
            raw = _unb32(text[len(PREFIX) :])
        except ValueError as exc:
            raise ValueError(f"node id {text!r} is not base32: {exc}") from None
        key, check = raw[:_KEY_LEN], raw[_KEY_LEN:]
        if len(raw) != _KEY_LEN + _CHECK_LEN or _checksum(key) != check:
            raise ValueError(f"node id {text!r} fails its checksum (mistyped?)")
        node = cls(key)
        if str(node) != PREFIX + text[len(PREFIX) :].lower():  # the last character's spare bits
            raise ValueError(f"node id {text!r} is misspelt: did you mean {node}?")
        return node

    def __str__(self) -> str:
        return PREFIX + _b32(self.key + _checksum(self.key))

    def __repr__(self) -> str:
        return f"NodeId({self.short}…)"

    @property
    def short(self) -> str:
        """The id's first 12 characters: enough to tell nodes apart on one screen."""
        return str(self)[:12]

    @property
    def fingerprint(self) -> str:
        """A short human-comparable digest, e.g. ``q3vz-7kpa``."""
        digest = _b32(hashlib.blake2b(self.key, digest_size=5, person=b"lichen-fp").digest())
        return f"{digest[:4]}-{digest[4:8]}"


def verify_signature(author: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is ``author``'s Ed25519 signature of ``message``
    (libsodium: canonical ``S``, small-order keys refused)."""
    if len(signature) != 64 or len(author) != _KEY_LEN:
        return False
    try:
        crypto_sign_open(signature + message, author)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


class Identity:
    """A node's Ed25519 signing key. Keep it secret; it is the node."""

    __slots__ = ("_secret", "_seed", "node_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != _KEY_LEN:
            raise IdentityError("an identity seed is exactly 32 bytes")
        public, self._secret = crypto_sign_seed_keypair(seed)
        self._seed = bytes(seed)
        self.node_id = NodeId(public)

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(_KEY_LEN))

    @property
    def seed(self) -> bytes:
        return self._seed

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached Ed25519 signature of ``message``."""
        return crypto_sign(message, self._secret)[:64]

    def __repr__(self) -> str:
        return f"Identity({self.node_id.short}…)"


_HEADER = """\
# Lichen node identity. This file IS the node: whoever holds it can write as
# this node. Keep it private (mode 0600) and never copy it to another board.
"""


def save_identity(identity: Identity, path: Path, *, overwrite: bool = False) -> None:
    """Write the key file atomically with mode 0600; refuse to replace one unless asked."""
    if path.exists() and not overwrite:
        raise IdentityError(f"{path} already exists; refusing to replace a node's identity")
    text = (
        _HEADER
        + f'node = "{identity.node_id}"\n'
        + f'secret = "{base64.b64encode(identity.seed).decode("ascii")}"\n'
    )
    atomic_write(path, text.encode("utf-8"), mode=0o600)


def load_identity(path: Path) -> Identity:
    """Load and check a key file. Every refusal names the file and the fix."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IdentityError(
            f"no identity at {path}. Fix: run `lichen init` to create one"
        ) from None
    except OSError as exc:
        raise IdentityError(f"cannot read identity {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise IdentityError(f"identity {path} is not a regular file")
    if st.st_mode & 0o077:
        raise IdentityError(
            f"identity {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}). "
            f"Fix: chmod 600 {path}"
        )
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise IdentityError(f"cannot read identity {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IdentityError(f"identity {path} is corrupt: {exc}") from None
    secret, node = data.get("secret"), data.get("node")
    if not isinstance(secret, str) or not isinstance(node, str):
        raise IdentityError(f"identity {path} is corrupt: 'node' or 'secret' is missing")
    try:
        seed = base64.b64decode(secret, validate=True)
    except ValueError:
        raise IdentityError(f"identity {path} is corrupt: 'secret' is not base64") from None
    if len(seed) != _KEY_LEN:
        raise IdentityError(f"identity {path} is corrupt: 'secret' is not 32 bytes")
    identity = Identity(seed)
    if str(identity.node_id) != node:
        raise IdentityError(
            f"identity {path} is corrupt: its secret belongs to {identity.node_id}, "
            f"not to the recorded node {node}"
        )
    return identity
