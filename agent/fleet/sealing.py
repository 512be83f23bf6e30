"""Sealed collections: entries that relays carry but only a collection's readers open.

A rule may mark its collections **sealed** (:mod:`.rules`). For each sealed
rule an admin writes **key generations** into ``_fleet``: a fresh X25519 key
pair per generation, its public key in the clear, its secret in a sealed box
(libsodium ``crypto_box_seal``, as sealed bundles use) to each reader — the
X25519 key of a node is derived from its Ed25519 node key::

    {"op": "key", "fleet", "collection": pattern, "gen": n,
     "public": bstr .size 32, "keys": [[node: bstr .size 32, box: bstr .size 80], …]}

The fold (:mod:`.document`) counts a generation only from an admin and only
if ``gen`` is above the pattern's last one; the newest is *current*.

**An entry of a sealed collection** has the body ``{"sealed": bstr}``: the key
id (8 bytes, BLAKE2b-64 of the generation's public key), a random 24-byte
nonce, then ``crypto_secretbox`` (XSalsa20-Poly1305) of the canonical CBOR of
the real body, under the key ``crypto_box_beforenm(generation public, writer's
X25519 secret)`` — the same key a reader gets from the generation's secret and
the writer's public key. So a writer needs only the public key (it is not
handed the secret and cannot open the others' entries, only its own), a
reader opens every writer's entries, and everyone else — a relay, a mule, a
carrier — holds signed ciphertext it verifies and passes on. Author, seq,
time, collection and document id stay in the clear.

:class:`Keyring` is a node's side: it seals what it writes to a sealed
collection and opens what it may read; :func:`stale` tells an admin which
sealed rules need a new generation (a reader left, or joined).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .. import encoding
from ..bundle.seal import seal_content_key, x25519_public
from ..errors import LichenError
from .rules import Member, Rule, check_pattern, rule_for

if TYPE_CHECKING:
    from ..entry import Entry
    from ..identity import Identity

__all__ = [
    "SEALED_FIELD",
    "Generation",
    "Keyring",
    "SealedError",
    "apply_key",
    "generation_body",
    "is_sealed_body",
    "key_id",
    "readers_of",
    "stale",
]

SEALED_FIELD = "sealed"
KEY_LEN = 32
KID_LEN = 8
NONCE_LEN = 24
MAC_LEN = 16
BOX_LEN = 80  # a sealed box of a 32-byte secret: ephemeral key, MAC, secret
MAX_RECIPIENTS = 128  # 128 handouts keep a key entry under the 16 KiB entry cap


class SealedError(LichenError, ValueError):
    """An entry of a sealed collection that this node cannot seal or open, and why."""


def key_id(public: bytes) -> bytes:
    """The 8-byte id of a generation: BLAKE2b-64 of its public key."""
    return hashlib.blake2b(public, digest_size=KID_LEN, person=b"lichen-seal-kid").digest()


@dataclass(frozen=True, slots=True)
class Generation:
    """One key generation of a sealed rule as the fold leaves it."""

    pattern: str
    gen: int
    public: bytes
    boxes: Mapping[bytes, bytes]  # reader's node key -> sealed box of the secret
    set_by: bytes | None = None
    ts: int = 0

    @property
    def kid(self) -> bytes:
        return key_id(self.public)


class _Node(Member, Protocol):
    @property
    def node(self) -> bytes: ...


class Membership(Protocol):
    """What sealing asks of the fold's :class:`~agent.fleet.document.Membership`."""

    @property
    def rules(self) -> Mapping[str, Rule]: ...

    @property
    def keys(self) -> Mapping[str, list[Generation]]: ...

    @property
    def members(self) -> Mapping[bytes, _Node]: ...

    def generation(self, kid: bytes) -> Generation | None: ...


def _pairs(value: object) -> dict[bytes, bytes] | None:
    if not isinstance(value, list) or len(value) > MAX_RECIPIENTS:
        return None
    boxes: dict[bytes, bytes] = {}
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2):
            return None
        node, box = pair
        if not (isinstance(node, bytes) and len(node) == 32 and isinstance(box, bytes)):
            return None
        if len(box) != BOX_LEN or node in boxes:
            return None
        boxes[node] = box
    return boxes


def apply_key(
    keys: dict[str, list[Generation]], body: Mapping[str, Any], author: bytes, ts: int
) -> str:
    """Apply an admin's ``key`` entry to ``keys``; the reason it does not count, or ""."""
    try:
        pattern = check_pattern(body.get("collection"))
    except ValueError as exc:
        return str(exc)
    gen, public = body.get("gen"), body.get("public")
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 1:
        return "gen is not a generation number (1 or more)"
    if not isinstance(public, bytes) or len(public) != KEY_LEN:
        return "public is not a 32-byte key"
    boxes = _pairs(body.get("keys"))
    if boxes is None:
        return f"keys is not a list of at most {MAX_RECIPIENTS} [node, 80-byte box] pairs"
    known = keys.setdefault(pattern, [])
    if known and gen <= known[-1].gen:
        return f"generation {gen} of {pattern} is not after generation {known[-1].gen}"
    known.append(Generation(pattern, gen, public, boxes, set_by=author, ts=ts))
    return ""


def generation_body(
    pattern: str,
    gen: int,
    readers: Iterable[bytes],
    *,
    secret: bytes | None = None,
    ephemerals: Sequence[bytes] | None = None,
) -> dict[str, Any]:
    """The fields of a new ``key`` entry: a fresh generation's secret sealed to each
    of ``readers``. ``secret`` and ``ephemerals`` (one per reader, in node order)
    make it deterministic — test vectors only."""
    from nacl.bindings import crypto_scalarmult_base

    secret = secret if secret is not None else os.urandom(KEY_LEN)
    nodes = sorted(set(readers))
    if len(nodes) > MAX_RECIPIENTS:
        raise SealedError(f"{pattern} has {len(nodes)} readers; at most {MAX_RECIPIENTS}")
    boxes = [
        [node, seal_content_key(secret, node, None if ephemerals is None else ephemerals[i])]
        for i, node in enumerate(nodes)
    ]
    public = bytes(crypto_scalarmult_base(secret))
    return {"collection": pattern, "gen": gen, "public": public, "keys": boxes}


def readers_of(membership: Membership, rule: Rule) -> list[bytes]:
    """The nodes a sealed ``rule``'s generations are for: approved, unrevoked members
    in one of its ``read`` groups (every approved member if it has no ``read``)."""
    return sorted(
        m.node
        for m in membership.members.values()
        if m.approved and not m.revoked and (rule.read is None or set(m.groups) & set(rule.read))
    )


def stale(membership: Membership) -> list[tuple[Rule, int, list[bytes]]]:
    """The sealed rules whose current generation is missing or not sealed to exactly
    their readers now: ``(rule, next gen, readers)`` for each."""
    found = []
    for rule in sorted(membership.rules.values(), key=lambda r: r.pattern):
        if not rule.sealed:
            continue
        gens = membership.keys.get(rule.pattern, [])
        readers = readers_of(membership, rule)
        if not gens or set(gens[-1].boxes) != set(readers):
            found.append((rule, gens[-1].gen + 1 if gens else 1, readers))
    return found


def is_sealed_body(body: object) -> bool:
    """Is ``body`` a sealed body (``{"sealed": kid ‖ nonce ‖ box}``)?"""
    return (
        isinstance(body, dict)
        and len(body) == 1
        and isinstance(sealed := body.get(SEALED_FIELD), bytes)
        and len(sealed) >= KID_LEN + NONCE_LEN + MAC_LEN
    )


def _where(gen: Generation) -> str:
    return f"key generation {gen.gen} of {gen.pattern}"


class Keyring:
    """A node's keys for sealed collections: its X25519 key pair (from its node key)
    and the generation secrets handed to it, opened once and kept."""

    def __init__(self, identity: Identity) -> None:
        from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519, crypto_sign_seed_keypair

        public, secret = crypto_sign_seed_keypair(identity.seed)
        self.node = identity.node_id.key
        self._secret = bytes(crypto_sign_ed25519_sk_to_curve25519(secret))
        self._public = x25519_public(bytes(public))
        self._secrets: dict[bytes, bytes] = {}  # kid -> generation secret
        self._shared: dict[tuple[bytes, bytes], bytes] = {}  # (kid, author) -> box key
        self.unreadable = 0  # entries the last readable() left out

    def _generation_secret(self, gen: Generation) -> bytes:
        from nacl.bindings import crypto_box_seal_open
        from nacl.exceptions import CryptoError

        known = self._secrets.get(gen.kid)
        if known is not None:
            return known
        box = gen.boxes.get(self.node)
        if box is None:
            raise SealedError(
                f"this node was not handed {_where(gen)} (sealed to {len(gen.boxes)} "
                "readers): it carries these entries but may not read them"
            )
        try:
            secret = bytes(crypto_box_seal_open(box, self._public, self._secret))
        except CryptoError:
            raise SealedError(f"this node's handout of {_where(gen)} does not open") from None
        if len(secret) != KEY_LEN:
            raise SealedError(f"this node's handout of {_where(gen)} is not a 32-byte key")
        self._secrets[gen.kid] = secret
        return secret

    def _key(self, gen: Generation, author: bytes) -> bytes:
        from nacl.bindings import crypto_box_beforenm

        cached = self._shared.get((gen.kid, author))
        if cached is None:
            if author == self.node:  # a writer opens its own: its secret, the public key
                cached = bytes(crypto_box_beforenm(gen.public, self._secret))
            else:
                theirs = x25519_public(author)
                cached = bytes(crypto_box_beforenm(theirs, self._generation_secret(gen)))
            self._shared[(gen.kid, author)] = cached
        return cached

    def seal(
        self, membership: Membership, collection: str, body: Any, nonce: bytes | None = None
    ) -> Any:
        """``body`` sealed under the current generation if ``collection`` is sealed
        (else ``body`` itself). ``nonce`` is for test vectors only."""
        from nacl.bindings import crypto_secretbox

        rule = rule_for(membership.rules, collection)
        if rule is None or not rule.sealed:
            return body
        gens = membership.keys.get(rule.pattern)
        if not gens:
            raise SealedError(
                f"{collection} is sealed ({rule.pattern}) but no key generation has reached "
                "this node yet. Fix: an admin runs lichen fleet rekey; sync with the fleet"
            )
        gen = gens[-1]
        nonce = nonce if nonce is not None else os.urandom(NONCE_LEN)
        plain = encoding.dumps(body, where="body")
        box = bytes(crypto_secretbox(plain, nonce, self._key(gen, self.node)))
        return {SEALED_FIELD: gen.kid + nonce + box}

    def open(self, membership: Membership, entry: Entry) -> Entry:
        """``entry`` with its body opened if it is sealed (the same entry otherwise);
        :class:`SealedError` naming why this node cannot open it."""
        from nacl.bindings import crypto_secretbox_open
        from nacl.exceptions import CryptoError

        if not is_sealed_body(entry.body):
            return entry
        rule = rule_for(membership.rules, entry.collection)
        sealed: bytes = entry.body[SEALED_FIELD]
        kid, nonce = sealed[:KID_LEN], sealed[KID_LEN : KID_LEN + NONCE_LEN]
        box = sealed[KID_LEN + NONCE_LEN :]
        gen = membership.generation(kid)
        if gen is None:
            if rule is None or not rule.sealed:
                return entry  # an ordinary body that happens to look sealed
            raise SealedError(
                f"{entry.where} is sealed under key {kid.hex()}, which this node has not "
                "seen handed out"
            )
        try:
            plain = bytes(crypto_secretbox_open(box, nonce, self._key(gen, entry.author)))
        except SealedError as exc:
            raise SealedError(f"{entry.where} stays sealed: {exc}") from None
        except CryptoError:
            raise SealedError(
                f"{entry.where} does not decrypt under {_where(gen)}: corrupt or forged"
            ) from None
        try:
            body = encoding.loads(plain, where="sealed body")
        except ValueError as exc:
            what = f"{entry.where} opens to a body that is not canonical"
            raise SealedError(f"{what}: {exc}") from None
        return replace(entry, body=body)

    def readable(self, membership: Membership, entries: Iterable[Entry]) -> Iterable[Entry]:
        """``entries`` opened; those this node cannot open are left out (counted in
        :attr:`unreadable`)."""
        self.unreadable = 0
        for entry in entries:
            try:
                yield self.open(membership, entry)
            except SealedError:
                self.unreadable += 1
