"""Entries: the signed, hash-chained records every feed is made of.

Wire and storage form (exact bytes, see ``docs/format.md``)::

    entry     = [content: bstr, signature: bstr .size 64]        ; a CBOR array of 2
    content   = canonical CBOR map with small integer keys:
        0 version     uint, = 1
        1 author      bstr .size 32      Ed25519 public key
        2 seq         uint, ≥ 1          position in the author's feed
        3 prev        bstr .size 32      hash of entry seq-1 (absent when seq = 1)
        4 ts          uint               hybrid-logical-clock timestamp
        5 collection  tstr
        6 doc         tstr               document id (absent for time-series entries)
        7 body        any                the payload (any value of agent.encoding's model)
        8 base        [+ bstr .size 32]  document versions this one replaces (only with 6)
    signature = Ed25519(author, "lichen/entry/v1" 0x00 || content)
    hash      = BLAKE2b-256(entry)       ; the whole array, signature included

:func:`sign_entry` builds one; :func:`decode_entry` parses and checks
structure, canonical form and size; :func:`verify_entry` checks the signature.
Decoding and verifying are separate so a receiver can reject malformed bytes
before paying for a signature check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import cbor2

from . import encoding
from .errors import BadSignature, EncodingError, MalformedEntry, OversizedEntry
from .identity import Identity, NodeId, verify_signature

__all__ = [
    "DEFAULT_MAX_ENTRY_SIZE",
    "ENTRY_VERSION",
    "SIGNING_DOMAIN",
    "Entry",
    "check_collection",
    "check_doc_id",
    "decode_entry",
    "entry_hash",
    "sign_entry",
    "verify_entry",
]

ENTRY_VERSION = 1
DEFAULT_MAX_ENTRY_SIZE = 16 * 1024
SIGNING_DOMAIN = b"lichen/entry/v1\x00"
MAX_SEQ = 2**63 - 1
MAX_BASE = 64

K_VERSION, K_AUTHOR, K_SEQ, K_PREV, K_TS, K_COLLECTION, K_DOC, K_BODY, K_BASE = range(9)
_KNOWN_KEYS = frozenset(range(9))
_COLLECTION_RE = re.compile(r"[A-Za-z0-9_.:\-]+(/[A-Za-z0-9_.:\-]+)*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


_VALID_COLLECTIONS: set[str] = set()  # names seen valid (bounded: cleared when large)


def check_collection(name: object) -> str:
    """Return ``name`` if it is a valid collection name, else raise ValueError."""
    if name in _VALID_COLLECTIONS:
        return name
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise ValueError(f"collection {name!r} must be text of 1 to 100 characters")
    if not _COLLECTION_RE.fullmatch(name):
        raise ValueError(
            f"collection {name!r} may only hold letters, digits and _ . : - "
            "in segments separated by single '/'"
        )
    if len(_VALID_COLLECTIONS) > 4096:
        _VALID_COLLECTIONS.clear()
    _VALID_COLLECTIONS.add(name)
    return name


def check_doc_id(doc_id: object) -> str:
    """Return ``doc_id`` if it is a valid document id, else raise ValueError."""
    if not isinstance(doc_id, str) or not 1 <= len(doc_id) <= 200:
        raise ValueError(f"document id {doc_id!r} must be text of 1 to 200 characters")
    if _CONTROL_RE.search(doc_id):
        raise ValueError(f"document id {doc_id!r} contains control characters")
    return doc_id


def entry_hash(raw: bytes) -> bytes:
    """BLAKE2b-256 of the encoded entry: the entry's name."""
    return hashlib.blake2b(raw, digest_size=32).digest()


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """One decoded entry. ``raw`` holds the exact signed bytes; everything else is
    read from them. Two entries are equal when their bytes are."""

    author: bytes
    seq: int
    prev: bytes | None
    ts: int
    collection: str
    doc_id: str | None
    body: Any
    base: tuple[bytes, ...]
    signature: bytes
    content: bytes
    raw: bytes
    hash: bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def author_id(self) -> NodeId:
        return NodeId(self.author)

    @property
    def where(self) -> str:
        """``lc1abc…/42 (readings/x)`` — how errors and logs name this entry."""
        return f"{NodeId(self.author).short}…/{self.seq} ({self.collection})"

    def __repr__(self) -> str:
        return f"Entry({self.where}, ts={self.ts})"


def _head(major: int, value: int) -> bytes:
    """A CBOR head (major type + argument) in shortest form."""
    top = major << 5
    if value < 24:
        return bytes([top | value])
    if value < 0x100:
        return bytes([top | 24, value])
    if value < 0x10000:
        return bytes([top | 25]) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes([top | 26]) + value.to_bytes(4, "big")
    return bytes([top | 27]) + value.to_bytes(8, "big")


def _bstr_header(length: int) -> bytes:
    return _head(2, length)


def _tstr(text: str) -> bytes:
    data = text.encode("utf-8")
    return _head(3, len(data)) + data


def encode_content(
    *,
    author: bytes,
    seq: int,
    prev: bytes | None,
    ts: int,
    collection: str,
    doc_id: str | None,
    body: bytes,
    base: Sequence[bytes],
) -> bytes:
    """The canonical content map, built by hand: its keys are the integers 0–8 in
    ascending order (already canonical), and ``body`` is the body's canonical CBOR."""
    keys = 6 + (prev is not None) + (doc_id is not None) + bool(base)
    parts = [bytes([0xA0 | keys]), b"\x00\x01\x01\x58\x20", author, b"\x02", _head(0, seq)]
    if prev is not None:
        parts += (b"\x03\x58\x20", prev)
    parts += (b"\x04", _head(0, ts), b"\x05", _tstr(collection))
    if doc_id is not None:
        parts += (b"\x06", _tstr(doc_id))
    parts += (b"\x07", body)
    if base:
        parts += (b"\x08", _head(4, len(base)), *(b"\x58\x20" + b for b in base))
    return b"".join(parts)


def sign_entry(
    identity: Identity,
    *,
    seq: int,
    prev: bytes | None,
    ts: int,
    collection: str,
    body: Any,
    doc_id: str | None = None,
    base: Sequence[bytes] = (),
    max_size: int = DEFAULT_MAX_ENTRY_SIZE,
    encoded_body: bytes | None = None,
) -> Entry:
    """Build and sign an entry of ``identity``'s feed.

    ``encoded_body``, if given, must be ``encoding.dumps(body)`` — computed
    earlier, off the writer's thread.

    Raises :class:`ValueError` for bad fields, :class:`~agent.errors.EncodingError`
    for a body outside the value model and :class:`OversizedEntry` above ``max_size``.
    """
    if not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"seq {seq} must be between 1 and {MAX_SEQ}")
    if (prev is None) != (seq == 1) or (prev is not None and len(prev) != 32):
        raise ValueError("prev is the 32-byte hash of entry seq-1, and absent only for seq 1")
    if not 0 <= ts < 2**64:
        raise ValueError(f"timestamp {ts} is out of range")
    check_collection(collection)
    body_bytes = encoded_body if encoded_body is not None else encoding.dumps(body, where="body")
    bases: list[bytes] = []
    if doc_id is not None:
        check_doc_id(doc_id)
        bases = sorted(set(base))
        if len(bases) > MAX_BASE or any(len(b) != 32 for b in bases):
            raise ValueError(f"base holds at most {MAX_BASE} 32-byte hashes")
    elif base:
        raise ValueError("base is only meaningful for a document (doc_id)")
    author = identity.node_id.key
    content = encode_content(
        author=author,
        seq=seq,
        prev=prev,
        ts=ts,
        collection=collection,
        doc_id=doc_id,
        body=body_bytes,
        base=bases,
    )
    signature = identity.sign(SIGNING_DOMAIN + content)
    raw = b"\x82" + _bstr_header(len(content)) + content + b"\x58\x40" + signature
    if len(raw) > max_size:
        raise OversizedEntry(
            f"entry is {len(raw)} bytes; the cap is {max_size} (log.max_entry_size)",
            f"{identity.node_id.short}…/{seq} ({collection})",
        )
    return Entry(
        author=author,
        seq=seq,
        prev=prev,
        ts=ts,
        collection=collection,
        doc_id=doc_id,
        body=body,
        base=tuple(bases),
        signature=signature,
        content=content,
        raw=raw,
        hash=entry_hash(raw),
    )


def _split_envelope(raw: bytes) -> tuple[bytes, bytes]:
    """Split ``[content, signature]`` by hand: strict, shortest-form headers only."""
    n = len(raw)
    if n < 4 or raw[0] != 0x82:
        raise MalformedEntry("not an entry: expected a CBOR array of 2 (content, signature)")
    head = raw[1]
    if 0x40 <= head <= 0x57:
        length, start = head - 0x40, 2
    elif head == 0x58 and n > 2:
        length, start = raw[2], 3
    elif head == 0x59 and n > 3:
        length, start = int.from_bytes(raw[2:4], "big"), 4
    elif head == 0x5A and n > 5:
        length, start = int.from_bytes(raw[2:6], "big"), 6
    else:
        raise MalformedEntry("entry content is not a definite-length byte string")
    if _bstr_header(length) != raw[1:start]:
        raise MalformedEntry("entry content length is not in shortest form")
    end = start + length
    if raw[end : end + 2] != b"\x58\x40":
        raise MalformedEntry("entry signature is not a 64-byte byte string (truncated?)")
    if n != end + 66:
        what = "truncated" if n < end + 66 else "followed by trailing bytes"
        raise MalformedEntry(f"entry is {what}: {n} bytes, expected {end + 66}")
    return raw[start:end], raw[end + 2 :]


def decode_entry(
    raw: bytes, *, max_size: int = DEFAULT_MAX_ENTRY_SIZE, strict: bool = True
) -> Entry:
    """Parse ``raw``; raise :class:`MalformedEntry` or :class:`OversizedEntry`.

    The signature is *not* checked here: call :func:`verify_entry`. ``strict``
    (the default, for anything received) also proves the content is the one
    canonical encoding of its value; ``strict=False`` is for re-reading entries
    this store accepted strictly before (their signature still guards the bytes).
    """
    raw = bytes(raw)
    if len(raw) > max_size:
        raise OversizedEntry(f"entry is {len(raw)} bytes; the cap is {max_size}")
    content, signature = _split_envelope(raw)
    try:
        fields = encoding.loads_strictly(content, max_depth=encoding.MAX_DEPTH + 2)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise MalformedEntry(f"entry content is not valid CBOR ({exc})") from None
    if not isinstance(fields, dict):
        raise MalformedEntry("entry content is not a map")
    unknown = set(fields) - _KNOWN_KEYS
    if unknown:
        raise MalformedEntry(f"entry content has unknown keys {sorted(unknown, key=str)}")
    entry = _from_fields(fields, signature, content, raw)
    if strict:
        body = encoding.dumps_decoded(entry.body)  # fast; None if it does not apply
        if body is None:
            try:
                body = encoding.dumps(entry.body, where="body")
            except EncodingError as exc:
                raise MalformedEntry(str(exc), entry.where) from None
        canonical = encode_content(
            author=entry.author,
            seq=entry.seq,
            prev=entry.prev,
            ts=entry.ts,
            collection=entry.collection,
            doc_id=entry.doc_id,
            body=body,
            base=entry.base,
        )
        if canonical != content:
            raise MalformedEntry("entry content is not in canonical CBOR form", entry.where)
    return entry


def _from_fields(fields: dict[Any, Any], signature: bytes, content: bytes, raw: bytes) -> Entry:
    version = fields.get(K_VERSION)
    if version != ENTRY_VERSION:
        raise MalformedEntry(f"entry version {version!r} is not supported (this node reads 1)")
    author, seq, ts = fields.get(K_AUTHOR), fields.get(K_SEQ), fields.get(K_TS)
    if not isinstance(author, bytes) or len(author) != 32:
        raise MalformedEntry("entry author is not a 32-byte public key")
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise MalformedEntry(f"entry seq {seq!r} is not an integer from 1 to {MAX_SEQ}")

    def bad(reason: str) -> NoReturn:
        raise MalformedEntry(reason, f"{NodeId(author).short}…/{seq}")

    prev = fields.get(K_PREV)
    if seq == 1 and prev is not None:
        bad("the first entry of a feed has no prev")
    if seq > 1 and (not isinstance(prev, bytes) or len(prev) != 32):
        bad("prev is not a 32-byte hash")
    if type(ts) is not int or ts < 0:
        bad(f"timestamp {ts!r} is not an unsigned integer")
    try:
        collection = check_collection(fields.get(K_COLLECTION))
    except ValueError as exc:
        bad(str(exc))
    if K_BODY not in fields:
        bad("entry has no body")
    doc_id = fields.get(K_DOC)
    base: tuple[bytes, ...] = ()
    if doc_id is not None:
        try:
            check_doc_id(doc_id)
        except ValueError as exc:
            bad(str(exc))
        if K_BASE in fields:
            base_list = fields[K_BASE]
            if (
                not isinstance(base_list, list)
                or not 1 <= len(base_list) <= MAX_BASE
                or any(not isinstance(b, bytes) or len(b) != 32 for b in base_list)
                or base_list != sorted(set(base_list))
            ):
                bad("base is not a sorted list of distinct 32-byte hashes")
            base = tuple(base_list)
    elif K_BASE in fields:
        bad("base without a document id")
    return Entry(
        author=author,
        seq=seq,
        prev=prev,
        ts=ts,
        collection=collection,
        doc_id=doc_id,
        body=fields[K_BODY],
        base=base,
        signature=signature,
        content=content,
        raw=raw,
        hash=entry_hash(raw),
    )


def verify_entry(entry: Entry) -> None:
    """Raise :class:`BadSignature` unless the author signed exactly this content."""
    if not verify_signature(entry.author, SIGNING_DOMAIN + entry.content, entry.signature):
        raise BadSignature("signature does not verify", entry.where)
