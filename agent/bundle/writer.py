"""The bundle writer: entries in, bundle bytes out (sans-IO).

Feed it entries in ``(author, seq)`` order with :meth:`BundleWriter.add`,
write what :meth:`BundleWriter.data_to_send` returns as it comes, then
:meth:`BundleWriter.finish` with the exporter's signing function and write
the rest. It holds at most two chunks (the one being filled and the one it
cannot yet mark as the last), so a bundle of any size is written in bounded
memory::

    writer = BundleWriter(identity.node_id.key, seal_to=cloud_key)
    out.write(writer.data_to_send())
    for author, seq, raw in rows:
        writer.add(author, seq, raw)
        out.write(writer.data_to_send())
    manifest = writer.finish(identity.sign)
    out.write(writer.data_to_send())
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .format import (
    CHUNK_HEAD,
    CHUNK_TARGET,
    FRAME_HEAD,
    KIND_CHUNK,
    MAGIC,
    FeedSpan,
    Header,
    Manifest,
    chunk_plaintext,
    content_hasher,
    frame,
    manifest_frame,
    signing_input,
    trailer,
)

__all__ = ["BundleWriter"]


class BundleWriter:
    """Builds one bundle. ``seal_to``: the Ed25519 key of the cloud it is sealed
    for (None: plain). ``bundle_id``, ``created_ms``, ``content_key`` and
    ``ephemeral_secret`` are random / now by default (fixed only for test vectors)."""

    def __init__(
        self,
        exporter: bytes,
        *,
        created_ms: int,
        seal_to: bytes | None = None,
        selection: dict[str, Any] | None = None,
        chunk_target: int = CHUNK_TARGET,
        bundle_id: bytes | None = None,
        content_key: bytes | None = None,
        ephemeral_secret: bytes | None = None,
    ) -> None:
        self.bundle_id = bundle_id if bundle_id is not None else os.urandom(16)
        self.created_ms = created_ms
        self.exporter = exporter
        self.selection = dict(selection or {})
        self.chunk_target = chunk_target
        self._key: bytes | None = None
        header = Header(exporter, self.bundle_id, created_ms)
        if seal_to is not None:
            from .seal import KEY_LEN, seal_content_key

            self._key = content_key if content_key is not None else os.urandom(KEY_LEN)
            sealed = seal_content_key(self._key, seal_to, ephemeral_secret)
            header = Header(exporter, self.bundle_id, created_ms, seal_to, sealed)
        self.header = header
        self._hash = content_hasher()
        self._out: list[bytes] = []
        self.bytes_written = 0
        self._filling: list[bytes] = []
        self._filling_bytes = 0
        self._ready: list[bytes] | None = None  # a full chunk, not yet known not to be last
        self._chunks = 0
        self._spans: list[FeedSpan] = []
        self._span: list[Any] | None = None  # [author, first, last, count, bytes]
        self._last: tuple[bytes, int] | None = None
        self.entries = 0
        self.entry_bytes = 0
        self.manifest: Manifest | None = None
        self._emit(MAGIC + header.encode())

    @property
    def sealed(self) -> bool:
        return self._key is not None

    def add(self, author: bytes, seq: int, raw: bytes) -> None:
        """Add one entry (its bytes as stored). Entries come in strictly increasing
        ``(author, seq)`` order; the caller read them from a store that verified them."""
        if self.manifest is not None:
            raise RuntimeError("add() after finish()")
        key = (author, seq)
        if self._last is not None and key <= self._last:
            raise ValueError(f"entries out of order: {key!r} after {self._last!r}")
        self._last = key
        span = self._span
        if span is None or span[0] != author:
            self._close_span()
            self._span = [author, seq, seq, 1, len(raw)]
        else:
            span[2] = seq
            span[3] += 1
            span[4] += len(raw)
        if self._filling and self._filling_bytes + len(raw) > self.chunk_target:
            self._rotate()
        self._filling.append(raw)
        self._filling_bytes += len(raw)
        self.entries += 1
        self.entry_bytes += len(raw)

    @property
    def feed_count(self) -> int:
        """Feeds with entries added so far."""
        return len(self._spans) + (self._span is not None)

    def pending_bytes(self) -> int:
        """Bytes added but not yet handed out (held in chunks still open)."""
        held = self._filling_bytes
        if self._ready is not None:
            held += sum(len(raw) for raw in self._ready)
        return held

    def finish(self, sign: Callable[[bytes], bytes]) -> Manifest:
        """Write the last chunk (an empty one if no entry was added), then the
        manifest signed with ``sign`` (the exporter identity's), then the trailer."""
        if self.manifest is not None:
            return self.manifest
        self._close_span()
        if self._ready is not None:
            self._write_chunk(self._ready, final=False)
        self._write_chunk(self._filling, final=True)
        self._ready, self._filling = None, []
        manifest = Manifest(
            exporter=self.exporter,
            bundle_id=self.bundle_id,
            created_ms=self.created_ms,
            feeds=tuple(self._spans),
            entries=self.entries,
            entry_bytes=self.entry_bytes,
            chunks=self._chunks,
            content_hash=self._hash.digest(),
            selection=self.selection,
        )
        content = manifest.content()
        framed = manifest_frame(content, sign(signing_input(content)))
        self._out.append(framed + trailer(len(framed) - FRAME_HEAD))
        self.bytes_written += len(framed) + 8
        self.manifest = manifest
        return manifest

    def data_to_send(self) -> bytes:
        """Every byte made since the last call (possibly ``b""``)."""
        out, self._out = b"".join(self._out), []
        return out

    # ------------------------------------------------------------ internals

    def _close_span(self) -> None:
        if self._span is not None:
            self._spans.append(FeedSpan(*self._span))
            self._span = None

    def _rotate(self) -> None:
        if self._ready is not None:
            self._write_chunk(self._ready, final=False)
        self._ready, self._filling, self._filling_bytes = self._filling, [], 0

    def _write_chunk(self, raws: list[bytes], *, final: bool) -> None:
        index = self._chunks
        payload = chunk_plaintext(raws)
        if self._key is not None:
            from .seal import seal_chunk

            payload = seal_chunk(self._key, index, final, payload)
        head = index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")
        assert len(head) == CHUNK_HEAD
        self._emit(frame(KIND_CHUNK, head + payload))
        self._chunks += 1

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self._out.append(data)
        self.bytes_written += len(data)
