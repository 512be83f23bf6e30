"""Entries decoded by their header: the body decoded when first read, or proven alone.

A sync session handles each entry it streams by its header alone: the
sender reads its own entries back from the log to send their bytes (it
needs author, seq and collection), and a receiver that proves entries in
worker processes (:mod:`agent.mesh.checking`) needs only what routes them
(author, seq, prev, ts, collection) before the writer stores the bytes. The
general decoder (:func:`agent.entry.decode_entry` with ``strict=False``)
builds the whole content map, body included, and checks it field by field
in Python: most of a session's per-entry work on either side.

:func:`decode_lazily` reads the header of a time-series entry in its one
canonical layout by hand — keys 0 to 5 in order, each head in shortest form,
then key 7 and the body to the end of the content — and returns the same
:class:`~agent.entry.Entry` :func:`~agent.entry.decode_entry` would, except
that its body is decoded from its bytes the first time it is read. Anything
else (a document, a key out of order, a field out of range, bytes that are no
entry at all) goes to :func:`~agent.entry.decode_entry`, which decides and
explains exactly as before.

What is left unproven is the body's own bytes: they are decoded when read.
So only bytes that are proven otherwise may be decoded this way — read back
from the log (stored after a strict check), or received and proven by a
worker's strict decoding before anything reads the body.

:func:`decode_strictly` is ``decode_entry(raw, strict=True)`` on the same
path: a header read this way is already the one canonical encoding of its
fields (every head in shortest form, the keys in order), so what is left to
prove is that the body's bytes are the canonical encoding of the value they
decode to — checked on the body alone instead of re-encoding the whole
content. Whatever does not pass goes to :func:`~agent.entry.decode_entry`,
which refuses it with its own words.
"""

from __future__ import annotations

from typing import Any

import cbor2

from . import encoding
from .entry import (
    DEFAULT_MAX_ENTRY_SIZE,
    MAX_SEQ,
    Entry,
    check_collection,
    decode_entry,
    entry_hash,
)

__all__ = ["decode_lazily", "decode_strictly"]

_BODY = Entry.__dict__["body"]  # the slot an entry keeps its body in
_UNREAD = object()


class _LazyEntry(Entry):
    """An :class:`Entry` whose body is decoded from ``content`` when first read."""

    __slots__ = ("_body_at",)
    _body_at: int

    @property
    def body(self) -> Any:
        try:
            return _BODY.__get__(self, Entry)
        except AttributeError:  # not read yet
            value = encoding.loads_strictly(self.content[self._body_at :])
            _BODY.__set__(self, value)
            return value

    @body.setter
    def body(self, value: Any) -> None:  # the dataclass's __init__ sets every field
        if value is not _UNREAD:
            _BODY.__set__(self, value)


_UINT_SIZES = {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}  # head → bytes of the argument that follow


def _uint(content: bytes, pos: int) -> tuple[int, int]:
    """The unsigned integer whose head in shortest form starts at ``pos``, and
    the position after it; ValueError for any other head."""
    head = content[pos]
    if head < 0x18:
        return head, pos + 1
    size = _UINT_SIZES.get(head)
    if size is None:
        raise ValueError("not an unsigned integer")
    end = pos + 1 + size
    value = int.from_bytes(content[pos + 1 : end], "big")
    if value < (24 if size == 1 else 1 << (4 * size)) or end > len(content):
        raise ValueError("not in shortest form")
    return value, end


def _read(raw: bytes) -> _LazyEntry:
    """The entry, read from the canonical layout of a time-series entry (the
    envelope and the header); ValueError (or IndexError) for any other layout,
    or a field out of range."""
    head = raw[1]
    if head == 0x59:
        length, start = (raw[2] << 8) | raw[3], 4
        shortest = length > 0xFF
    else:
        length, start = raw[2], 3
        shortest = head == 0x58 and length >= 24
    end = start + length
    if not shortest or raw[0] != 0x82 or len(raw) != end + 66 or raw[end : end + 2] != b"\x58\x40":
        raise ValueError("not the canonical envelope")
    content = raw[start:end]
    if content[1:6] != b"\x00\x01\x01\x58\x20" or content[38] != 0x02:
        raise ValueError("not the canonical layout")
    seq, pos = _uint(content, 39)
    prev = None
    if content[pos] == 0x03:
        if content[pos + 1 : pos + 3] != b"\x58\x20":
            raise ValueError("prev is not 32 bytes")
        prev, pos = content[pos + 3 : pos + 35], pos + 35
    if not 1 <= seq <= MAX_SEQ or (prev is None) != (seq == 1) or content[pos] != 0x04:
        raise ValueError("not the canonical layout")
    ts, pos = _uint(content, pos + 1)
    head = content[pos + 1]
    if content[pos] != 0x05 or not 0x61 <= head <= 0x78:
        raise ValueError("not the canonical layout")
    if head == 0x78:
        length, pos = content[pos + 2], pos + 3
        if length < 24:
            raise ValueError("not in shortest form")
    else:
        length, pos = head - 0x60, pos + 2
    collection = check_collection(content[pos : pos + length].decode("utf-8"))
    pos += length
    if content[pos] != 0x07 or content[0] != 0xA6 + (prev is not None) or pos + 1 >= len(content):
        raise ValueError("not a time-series entry in the canonical layout")
    entry = _LazyEntry(
        author=content[6:38],
        seq=seq,
        prev=prev,
        ts=ts,
        collection=collection,
        doc_id=None,
        body=_UNREAD,
        base=(),
        signature=raw[end + 2 :],
        content=content,
        raw=raw,
        hash=entry_hash(raw),
    )
    object.__setattr__(entry, "_body_at", pos + 1)
    return entry


def decode_lazily(raw: bytes, *, max_size: int = DEFAULT_MAX_ENTRY_SIZE) -> Entry:
    """``decode_entry(raw, max_size=max_size, strict=False)``, the body decoded
    when first read (see the module: only for bytes proven otherwise)."""
    if type(raw) is bytes and len(raw) <= max_size:
        try:
            return _read(raw)
        except (ValueError, IndexError):
            pass  # decode_entry decides, and explains
    return decode_entry(raw, max_size=max_size, strict=False)


def decode_strictly(raw: bytes, *, max_size: int = DEFAULT_MAX_ENTRY_SIZE) -> Entry:
    """``decode_entry(raw, max_size=max_size)`` (strict: the one canonical
    encoding), the header read by hand and the body proven on its own."""
    if type(raw) is bytes and len(raw) <= max_size:
        try:
            entry = _read(raw)
            body_bytes = entry.content[entry._body_at :]
            # deeper than the model's depth: decode_entry decides
            body = encoding.loads_strictly(body_bytes, max_depth=encoding.MAX_DEPTH)
        except (cbor2.CBORDecodeError, ValueError, IndexError, TypeError, OverflowError,
                RecursionError):  # fmt: skip
            pass  # decode_entry decides, and explains
        else:
            if encoding.dumps_decoded(body) == body_bytes:
                _BODY.__set__(entry, body)
                return entry
    return decode_entry(raw, max_size=max_size)
