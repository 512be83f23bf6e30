"""The bundle reader: bundle bytes in, verified entries out (sans-IO).

``receive_data(bytes)`` (``b""`` at the end of the file), then
``next_event()`` until :data:`~agent.sansio.NEED_DATA`. Events, in order:
one :class:`BundleStart` (the header), a :class:`Chunk` per chunk (its
entries, decoded), one :class:`BundleEnd` (the manifest, once everything
matched it). Anything wrong raises :class:`~agent.bundle.format.BundleError`
naming it, and the reader is then dead.

What is checked: the magic; frame kinds, order and sizes (a frame above its
kind's limit is refused from its 5-byte head, before it is buffered); chunk
numbers; each sealed chunk's authentication (its nonce carries its number
and whether it is the last); every entry — strict canonical decoding, the
size cap, and with ``verify`` its Ed25519 signature; entries in strictly
increasing ``(author, seq)`` order and consecutive entries of a feed chained
(``prev``, increasing timestamps); the manifest — the exporter's signature,
the same exporter and bundle id as the header, the content hash of every
byte before it, the chunk and entry counts and every feed's span; the
trailer; and that nothing follows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from ..entry import Entry, decode_entry, verify_entry
from ..errors import EntryError
from ..identity import NodeId
from ..sansio import NEED_DATA, NeedData
from .format import (
    CHUNK_HEAD,
    FRAME_HEAD,
    KIND_CHUNK,
    KIND_HEADER,
    KIND_MANIFEST,
    MAGIC,
    BundleError,
    FeedSpan,
    Header,
    Manifest,
    check_same_bundle,
    content_hasher,
    decode_chunk_plaintext,
    decode_header,
    decode_manifest_frame,
    frame_head,
    trailer_length,
)
from .seal import Opener

__all__ = ["BundleEnd", "BundleEvent", "BundleReader", "BundleStart", "Chunk"]


@dataclass(frozen=True, slots=True)
class BundleStart:
    header: Header


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk's entries; ``digest``: BLAKE2b-256 of its frame as read."""

    index: int
    entries: list[Entry]
    digest: bytes


@dataclass(frozen=True, slots=True)
class BundleEnd:
    manifest: Manifest


BundleEvent = BundleStart | Chunk | BundleEnd


class BundleReader:
    """Reads one bundle. ``opener``: this node's key, for bundles sealed to it.
    ``verify=False`` skips the signature checks (and strict decoding) of entries
    — only for bytes already verified once, whose chunk digests the caller compares."""

    def __init__(
        self,
        *,
        opener: Opener | None = None,
        max_entry_size: int,
        verify: bool = True,
    ) -> None:
        self.opener = opener
        self.max_entry_size = max_entry_size
        self.verify = verify
        self.header: Header | None = None
        self.bytes_read = 0
        self._buffer = bytearray()
        self._ended = False
        self._done = False
        self._dead = False
        self._key: bytes | None = None
        self._hash = content_hasher()
        self._chunks = 0
        self._final_seen = False
        self._manifest: Manifest | None = None
        self._manifest_size = 0
        self._spans: list[list[Any]] = []
        self._last: Entry | None = None
        self._entries = 0
        self._entry_bytes = 0

    def receive_data(self, data: bytes) -> None:
        if self._ended and data:
            raise BundleError("data after the end of the bundle")
        if not data:
            self._ended = True
        self._buffer += data
        self.bytes_read += len(data)

    def next_event(self) -> BundleEvent | Literal[NeedData.NEED_DATA]:
        if self._dead:
            raise BundleError("the bundle was already refused")
        try:
            return self._next()
        except BundleError:
            self._dead = True
            raise

    # ------------------------------------------------------------ internals

    def _next(self) -> BundleEvent | Literal[NeedData.NEED_DATA]:
        if self._done:
            return NEED_DATA
        if self.header is None:
            if len(self._buffer) < len(MAGIC):
                return self._short("its first bytes")
            if bytes(self._buffer[: len(MAGIC)]) != MAGIC:
                raise BundleError("not a Lichen bundle (its first bytes are not the bundle magic)")
            framed = self._frame(len(MAGIC))
            if framed is None:
                return self._short("the header")
            kind, body, size = framed
            if kind != KIND_HEADER:
                raise BundleError("the bundle does not start with its header")
            self._consume(len(MAGIC) + size)
            self.header = header = decode_header(body)
            if header.sealed:
                if self.opener is None:
                    raise BundleError(
                        f"the bundle is sealed to {NodeId(header.recipient or b'')}: only that "
                        "cloud can import it (with `lichen bundle import` in its home)"
                    )
                self._key = self.opener.content_key(
                    header.recipient or b"", header.sealed_key or b""
                )
            return BundleStart(header)
        if self._manifest is not None:
            return self._trailer()
        framed = self._frame(0)
        if framed is None:
            return self._short("a chunk" if not self._final_seen else "the manifest")
        kind, body, size = framed
        if kind == KIND_CHUNK:
            return self._chunk(body, size)
        if kind == KIND_MANIFEST:
            return self._manifest_frame(body, size)
        raise BundleError("a second header inside the bundle")

    def _short(self, what: str) -> Literal[NeedData.NEED_DATA]:
        if self._ended:
            raise BundleError(
                f"the bundle is truncated: it ends before {what} ({self.bytes_read} bytes read)"
            )
        return NEED_DATA

    def _frame(self, offset: int) -> tuple[int, bytes, int] | None:
        buffer = self._buffer
        if len(buffer) < offset + FRAME_HEAD:
            return None
        kind, length = frame_head(bytes(buffer[offset : offset + FRAME_HEAD]))
        end = offset + FRAME_HEAD + length
        if len(buffer) < end:
            return None
        return kind, bytes(buffer[offset + FRAME_HEAD : end]), FRAME_HEAD + length

    def _consume(self, size: int) -> None:
        self._hash.update(self._buffer[:size])
        del self._buffer[:size]

    def _chunk(self, body: bytes, size: int) -> Chunk:
        if self._final_seen:
            raise BundleError("a chunk follows the chunk marked last")
        digest = hashlib.blake2b(self._buffer[:size], digest_size=32).digest()
        self._consume(size)
        if len(body) < CHUNK_HEAD or body[4] not in (0, 1):
            raise BundleError(f"chunk {self._chunks} has a malformed head")
        index, final = int.from_bytes(body[:4], "big"), body[4] == 1
        if index != self._chunks:
            raise BundleError(
                f"chunk {index} where chunk {self._chunks} was due: reordered or lost"
            )
        payload = body[CHUNK_HEAD:]
        if self._key is not None:
            from .seal import open_chunk

            payload = open_chunk(self._key, index, final, payload)
        raws = decode_chunk_plaintext(payload)
        entries = [self._entry(raw, index) for raw in raws]
        self._chunks += 1
        self._final_seen = final
        return Chunk(index, entries, digest)

    def _entry(self, raw: bytes, chunk: int) -> Entry:
        try:
            entry = decode_entry(raw, max_size=self.max_entry_size, strict=self.verify)
            if self.verify:
                verify_entry(entry)
        except EntryError as exc:
            raise BundleError(f"chunk {chunk}: a forged or corrupt entry: {exc}") from None
        last = self._last
        if last is not None:
            if (entry.author, entry.seq) <= (last.author, last.seq):
                raise BundleError(f"chunk {chunk}: entry {entry.where} is out of order")
            follows = entry.author == last.author and entry.seq == last.seq + 1
            if follows and (entry.prev != last.hash or entry.ts <= last.ts):
                raise BundleError(
                    f"chunk {chunk}: entry {entry.where} does not chain to the entry before "
                    "it: its author signed two histories (a fork)"
                )
        span = self._spans[-1] if self._spans and self._spans[-1][0] == entry.author else None
        if span is None:
            self._spans.append([entry.author, entry.seq, entry.seq, 1, len(raw)])
        else:
            span[2] = entry.seq
            span[3] += 1
            span[4] += len(raw)
        self._last = entry
        self._entries += 1
        self._entry_bytes += len(raw)
        return entry

    def _manifest_frame(self, body: bytes, size: int) -> BundleEvent | Literal[NeedData.NEED_DATA]:
        header = self.header
        assert header is not None
        if not self._final_seen:
            raise BundleError(
                "the manifest follows a chunk not marked last: chunks were removed"
                if self._chunks
                else "the bundle has no chunk"
            )
        content_hash = self._hash.digest()
        del self._buffer[:size]
        manifest = decode_manifest_frame(body)
        self._manifest_size = size - FRAME_HEAD
        check_same_bundle(header, manifest)
        if manifest.content_hash != content_hash:
            raise BundleError(
                "the content does not match the manifest's hash: the bundle was altered"
            )
        spans = tuple(FeedSpan(*span) for span in self._spans)
        counted = (self._chunks, self._entries, self._entry_bytes, spans)
        if (manifest.chunks, manifest.entries, manifest.entry_bytes, manifest.feeds) != counted:
            raise BundleError(
                f"the manifest says {manifest.entries} entries in {manifest.chunks} chunks; "
                f"the bundle holds {self._entries} in {self._chunks} (or other feed ranges)"
            )
        self._manifest = manifest
        return self._trailer()

    def _trailer(self) -> BundleEvent | Literal[NeedData.NEED_DATA]:
        if len(self._buffer) < 8:
            return self._short("its trailer")
        tail = bytes(self._buffer[:8])
        if trailer_length(tail) != self._manifest_size:
            raise BundleError("the trailer is corrupt")
        if len(self._buffer) > 8:
            raise BundleError("bytes follow the bundle's trailer")
        if not self._ended:
            return NEED_DATA
        self._done = True
        assert self._manifest is not None
        return BundleEnd(self._manifest)
