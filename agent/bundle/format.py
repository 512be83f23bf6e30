"""The bundle file format, version 1: frames, the header, the manifest (docs/format.md).

A bundle is a file of signed entries, exactly as their authors signed them,
for carrying data by hand (a USB stick, a browser download)::

    bundle   = MAGIC, header frame, chunk frame+, manifest frame, trailer
    MAGIC    = 89 4c 43 42 0d 0a 1a 0a               ("\\x89LCB\\r\\n\\x1a\\n")
    frame    = kind: u8, length: u32 big-endian, body
    trailer  = length of the manifest frame's body: u32 big-endian, "LCBE"

Plain functions over bytes and values: no I/O. The streaming cores are
:mod:`agent.bundle.writer` and :mod:`agent.bundle.reader`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from .. import encoding
from ..entry import _head
from ..errors import EncodingError, LichenError
from ..identity import NodeId, verify_signature

__all__ = [
    "CHUNK_TARGET",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CHUNK",
    "MAX_HEADER",
    "MAX_MANIFEST",
    "SIGNING_DOMAIN",
    "TRAILER_MAGIC",
    "BundleError",
    "FeedSpan",
    "Header",
    "Manifest",
    "check_same_bundle",
    "chunk_plaintext",
    "decode_chunk_plaintext",
    "decode_header",
    "decode_manifest_frame",
    "frame",
    "frame_head",
    "trailer",
    "trailer_length",
]

FORMAT_VERSION = 1
MAGIC = b"\x89LCB\r\n\x1a\n"
TRAILER_MAGIC = b"LCBE"
SIGNING_DOMAIN = b"lichen/bundle/v1\x00"

KIND_HEADER = 0x48  # "H"
KIND_CHUNK = 0x43  # "C"
KIND_MANIFEST = 0x4D  # "M"
FRAME_HEAD = 5  # kind + u32 length
CHUNK_HEAD = 5  # u32 index + u8 final

#: what a writer puts in one chunk before starting the next (one larger entry
#: goes alone); a reader refuses any frame above its kind's limit before
#: buffering it, so no bundle can make an importer hold more than one chunk
CHUNK_TARGET = 64 * 1024
MAX_HEADER = 4096
MAX_CHUNK = 4 * 1024 * 1024
MAX_MANIFEST = 16 * 1024 * 1024

_LIMITS = {KIND_HEADER: MAX_HEADER, KIND_CHUNK: MAX_CHUNK, KIND_MANIFEST: MAX_MANIFEST}
_NAMES = {KIND_HEADER: "header", KIND_CHUNK: "chunk", KIND_MANIFEST: "manifest"}

_ID_LEN = 16
_KEY_LEN = 32
SEALED_KEY_LEN = 32 + 32 + 16  # ephemeral X25519 key, content key, MAC


class BundleError(LichenError, ValueError):
    """A bundle is malformed, truncated, corrupt, forged, or not for this node.
    ``str(error)`` is one line naming the problem (and the fix, where there is one)."""


@dataclass(frozen=True, slots=True)
class Header:
    """The first frame: who made the bundle, which one it is, and for whom it is sealed."""

    exporter: bytes
    bundle_id: bytes
    created_ms: int
    recipient: bytes | None = None  # the cloud's Ed25519 key, for a sealed bundle
    sealed_key: bytes | None = None  # the content key in an X25519 sealed box

    @property
    def sealed(self) -> bool:
        return self.recipient is not None

    def encode(self) -> bytes:
        value = _opening(self.exporter, self.bundle_id, self.created_ms)
        if self.recipient is not None:
            value[4] = self.recipient
            value[5] = self.sealed_key
        return frame(KIND_HEADER, encoding.dumps(value))


@dataclass(frozen=True, slots=True)
class FeedSpan:
    """What a bundle holds of one feed: seqs ``first``…``last`` (``count`` entries
    of them, fewer when a selection or a gap left some out; ``bytes`` in all)."""

    author: bytes
    first: int
    last: int
    count: int
    bytes: int

    @property
    def node_id(self) -> NodeId:
        return NodeId(self.author)

    def as_list(self) -> list[Any]:
        return [self.author, self.first, self.last, self.count, self.bytes]


@dataclass(frozen=True, slots=True)
class Manifest:
    """The last frame: what the bundle holds and the hash of every byte before it,
    signed by the exporter."""

    exporter: bytes
    bundle_id: bytes
    created_ms: int
    feeds: tuple[FeedSpan, ...]
    entries: int
    entry_bytes: int
    chunks: int
    content_hash: bytes
    selection: dict[str, Any] = field(default_factory=dict)

    def content(self) -> bytes:
        value = _opening(self.exporter, self.bundle_id, self.created_ms)
        value |= {
            4: [span.as_list() for span in self.feeds],
            5: self.entries,
            6: self.entry_bytes,
            7: self.chunks,
            8: self.content_hash,
        }
        if self.selection:
            value[9] = self.selection
        return encoding.dumps(value)

    def since(self) -> dict[bytes, int]:
        """Per feed, the last seq this bundle included: where the next one starts."""
        return {span.author: span.last for span in self.feeds}


def _opening(exporter: bytes, bundle_id: bytes, created_ms: int) -> dict[int, Any]:
    """The keys the header and the manifest both start with: which bundle this is."""
    return {0: FORMAT_VERSION, 1: exporter, 2: bundle_id, 3: created_ms}


def frame(kind: int, body: bytes) -> bytes:
    return bytes((kind,)) + len(body).to_bytes(4, "big") + body


def frame_head(head: bytes) -> tuple[int, int]:
    """A frame's kind and body length from its ``FRAME_HEAD`` bytes; a kind this
    version does not know, or a length above its kind's limit, is refused here,
    before the body is read."""
    kind = head[0]
    length = int.from_bytes(head[1:FRAME_HEAD], "big")
    limit = _LIMITS.get(kind)
    if limit is None:  # its length has nothing to be checked against: refuse it now
        raise BundleError(f"a frame of unknown kind 0x{kind:02x}")
    if length > limit:
        raise BundleError(
            f"a {_NAMES[kind]} frame of {length} bytes exceeds the limit of {limit} bytes: "
            "corrupt, or not a bundle this Lichen can read"
        )
    return kind, length


def trailer(manifest_body_length: int) -> bytes:
    return manifest_body_length.to_bytes(4, "big") + TRAILER_MAGIC


def trailer_length(tail: bytes) -> int | None:
    """The manifest body's length the 8-byte trailer ``tail`` gives, or None if
    it is not a trailer."""
    if len(tail) != 8 or tail[4:] != TRAILER_MAGIC:
        return None
    return int.from_bytes(tail[:4], "big")


def check_same_bundle(header: Header, manifest: Manifest) -> None:
    """Refuse a manifest that names another bundle than ``header``."""
    if manifest.exporter != header.exporter or manifest.bundle_id != header.bundle_id:
        raise BundleError("the manifest belongs to another bundle than the header")


def signing_input(manifest_content: bytes) -> bytes:
    return SIGNING_DOMAIN + manifest_content


def manifest_frame(content: bytes, signature: bytes) -> bytes:
    return frame(KIND_MANIFEST, encoding.dumps([content, signature]))


def chunk_plaintext(raws: list[bytes]) -> bytes:
    """The entries of one chunk as a CBOR array of byte strings — each entry's
    bytes as stored, not re-encoded (the same bytes canonical CBOR would write)."""
    parts = [_head(4, len(raws))]
    for raw in raws:
        parts.append(_head(2, len(raw)))
        parts.append(raw)
    return b"".join(parts)


def decode_chunk_plaintext(data: bytes) -> list[bytes]:
    try:
        value = encoding.loads(data, where="chunk")
    except EncodingError as exc:
        raise BundleError(f"a chunk does not decode: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(item, bytes) for item in value):
        raise BundleError("a chunk is not an array of entries")
    return value


def content_hasher() -> Any:
    """The running BLAKE2b-256 over every byte before the manifest frame."""
    return hashlib.blake2b(digest_size=32)


def decode_header(body: bytes) -> Header:
    value = _map(body, "header", required={0, 1, 2, 3}, optional={4, 5})
    if value[0] != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {value[0]!r}; this Lichen reads version {FORMAT_VERSION}. "
            "Fix: upgrade Lichen here"
        )
    header = Header(
        exporter=_bytes(value[1], _KEY_LEN, "header exporter"),
        bundle_id=_bytes(value[2], _ID_LEN, "header bundle id"),
        created_ms=_uint(value[3], "header created"),
    )
    if (4 in value) != (5 in value):
        raise BundleError("the header names a recipient without a sealed key, or the reverse")
    if 4 in value:
        header = Header(
            header.exporter,
            header.bundle_id,
            header.created_ms,
            _bytes(value[4], _KEY_LEN, "header recipient"),
            _bytes(value[5], SEALED_KEY_LEN, "header sealed key"),
        )
    return header


def decode_manifest_frame(body: bytes) -> Manifest:
    """Decode and check the manifest frame's body: its shape and the exporter's
    signature (not yet that it matches the content: the reader does that)."""
    try:
        envelope = encoding.loads(body, where="manifest")
    except EncodingError as exc:
        raise BundleError(f"the manifest does not decode: {exc}") from None
    if (
        not isinstance(envelope, list)
        or len(envelope) != 2
        or not all(isinstance(part, bytes) for part in envelope)
    ):
        raise BundleError("the manifest is not [content, signature]")
    content, signature = envelope
    value = _map(content, "manifest", required=set(range(9)), optional={9})
    if value[0] != FORMAT_VERSION:
        raise BundleError(f"manifest format version {value[0]!r} is not {FORMAT_VERSION}")
    exporter = _bytes(value[1], _KEY_LEN, "manifest exporter")
    if not verify_signature(exporter, signing_input(content), _bytes(signature, 64, "signature")):
        raise BundleError(
            f"the manifest's signature does not verify against its exporter {NodeId(exporter)}: "
            "the bundle was altered or forged"
        )
    feeds = value[4]
    if not isinstance(feeds, list):
        raise BundleError("manifest feeds is not an array")
    spans = tuple(_span(item) for item in feeds)
    if any(a.author >= b.author for a, b in itertools.pairwise(spans)):
        raise BundleError("manifest feeds are not in strictly increasing author order")
    selection = value.get(9, {})
    if not isinstance(selection, dict):
        raise BundleError("manifest selection is not a map")
    return Manifest(
        exporter=exporter,
        bundle_id=_bytes(value[2], _ID_LEN, "manifest bundle id"),
        created_ms=_uint(value[3], "manifest created"),
        feeds=spans,
        entries=_uint(value[5], "manifest entries"),
        entry_bytes=_uint(value[6], "manifest bytes"),
        chunks=_uint(value[7], "manifest chunks"),
        content_hash=_bytes(value[8], 32, "manifest content hash"),
        selection=selection,
    )


def _span(item: Any) -> FeedSpan:
    if not isinstance(item, list) or len(item) != 5:
        raise BundleError("a manifest feed is not [author, first, last, count, bytes]")
    author = _bytes(item[0], _KEY_LEN, "manifest feed author")
    first, last, count, size = (_uint(x, "manifest feed range") for x in item[1:])
    if not 1 <= first <= last or not 1 <= count <= last - first + 1:
        raise BundleError(f"manifest feed {NodeId(author).short}…: bad range {item[1:4]}")
    return FeedSpan(author, first, last, count, size)


def _map(data: bytes, what: str, *, required: set[int], optional: set[int]) -> dict[Any, Any]:
    try:
        value = encoding.loads(data, where=what)
    except EncodingError as exc:
        raise BundleError(f"the {what} does not decode: {exc}") from None
    if not isinstance(value, dict):
        raise BundleError(f"the {what} is not a map")
    keys = set(value)
    if not required <= keys or keys - required - optional:
        raise BundleError(
            f"the {what} has keys {sorted(keys, key=str)}; expected {sorted(required)}"
        )
    return value


def _bytes(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise BundleError(f"{what} is not {length} bytes")
    return value


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise BundleError(f"{what} is not an unsigned integer")
    return value
