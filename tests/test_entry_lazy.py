"""Entries decoded by their header: the same entry as decode_entry, body read on demand."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.entry import Entry, decode_entry, sign_entry
from agent.entry_lazy import decode_lazily, decode_strictly
from agent.errors import EntryError, MalformedEntry, OversizedEntry

from .conftest import seeded_identity
from .strategies import collections, doc_ids, values

ME = seeded_identity(3)
FIELDS = ("author", "seq", "prev", "ts", "collection", "doc_id", "body", "base", "signature",
          "content", "raw", "hash")  # fmt: skip


def _same(lazy: Entry, eager: Entry) -> None:
    for name in FIELDS:
        if name != "body":
            assert getattr(lazy, name) == getattr(eager, name), name
    assert cbor2.dumps(lazy.body, canonical=True) == cbor2.dumps(eager.body, canonical=True)
    assert lazy == eager and hash(lazy) == hash(eager) and repr(lazy) == repr(eager)


@given(
    body=values,
    collection=collections,
    doc=st.none() | doc_ids,
    seq=st.integers(1, 2**63 - 1),
    ts=st.integers(0, 2**64 - 1),
)
@settings(max_examples=100)
def test_any_entry_decodes_as_decode_entry_does(
    body: object, collection: str, doc: str | None, seq: int, ts: int
) -> None:
    prev = None if seq == 1 else bytes(range(32))
    entry = sign_entry(ME, seq=seq, prev=prev, ts=ts, collection=collection, body=body, doc_id=doc)
    lazy = decode_lazily(entry.raw)
    _same(lazy, decode_entry(entry.raw, strict=False))
    _same(lazy, entry)
    _same(decode_strictly(entry.raw), decode_entry(entry.raw))


def test_the_body_is_decoded_once_and_read_back_after_pickling() -> None:
    entry = sign_entry(ME, seq=1, prev=None, ts=5, collection="r/x", body={"v": [1, 2.5, "a"]})
    lazy = decode_lazily(entry.raw)
    assert type(lazy) is not Entry  # a time-series entry takes the header path
    assert lazy.body is lazy.body == {"v": [1, 2.5, "a"]}
    again = pickle.loads(pickle.dumps(decode_lazily(entry.raw)))
    _same(again, entry)
    with pytest.raises(AttributeError):
        lazy.body = 1  # type: ignore[misc]  # frozen, as every entry


def _spoiled_content(entry: Entry, content: bytes) -> bytes:
    size = len(content)
    head = b"\x59" + size.to_bytes(2, "big") if size > 255 else b"\x58" + bytes([size])
    return b"\x82" + head + content + b"\x58\x40" + entry.signature


@pytest.mark.parametrize(
    "spoil",
    [
        lambda c: c[:2] + b"\x02" + c[3:],  # version 2
        lambda c: c[:39] + b"\x00" + c[40:],  # seq 0
        lambda c: c.replace(b"\x05\x63r/x", b"\x05\x63r//", 1),  # a bad collection
        lambda c: c.replace(b"\x05\x63r/x", b"\x05\x43r/x", 1),  # collection as bytes
        lambda c: c[:39] + b"\x18\x05" + c[40:],  # a long head (loosely: fine)
        lambda c: c[:6] + c[38:],  # no author
    ],
)
def test_other_layouts_and_faults_are_decode_entrys_to_judge(
    spoil: Callable[[bytes], bytes],
) -> None:
    entry = sign_entry(ME, seq=5, prev=b"\x22" * 32, ts=7, collection="r/x", body=[1, 2])
    raw = _spoiled_content(entry, spoil(entry.content))
    try:
        expected: Entry | str = decode_entry(raw, strict=False)
    except EntryError as exc:
        expected = str(exc)
    try:
        got: Entry | str = decode_lazily(raw)
    except EntryError as exc:
        got = str(exc)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, Entry)
        _same(got, expected)


def test_only_the_bodys_own_bytes_are_left_to_be_proven() -> None:
    entry = sign_entry(ME, seq=1, prev=None, ts=1, collection="r/x", body=[1, 2])
    raw = _spoiled_content(entry, entry.content[:-1])  # cut inside the body
    with pytest.raises(MalformedEntry, match="not valid CBOR"):
        decode_entry(raw, strict=False)
    lazy = decode_lazily(raw)  # its header is read; its body is not proven...
    assert (lazy.author, lazy.seq, lazy.collection) == (entry.author, 1, "r/x")
    with pytest.raises(cbor2.CBORDecodeError):
        lazy.body  # noqa: B018  # ...until it is read


def test_envelope_and_size_faults_are_refused_with_decode_entrys_words() -> None:
    entry = sign_entry(ME, seq=1, prev=None, ts=1, collection="c", body="x" * 100)
    with pytest.raises(OversizedEntry):
        decode_lazily(entry.raw, max_size=50)
    with pytest.raises(MalformedEntry, match="truncated"):
        decode_lazily(entry.raw[:-1])
    assert cbor2.loads(entry.raw)[0] == entry.content


@pytest.mark.parametrize("size", [0, 30, 300, 3000])
def test_content_of_every_length_head_takes_the_header_path(size: int) -> None:
    entry = sign_entry(ME, seq=2, prev=b"\x33" * 32, ts=2**40, collection="c", body="x" * size)
    lazy = decode_lazily(entry.raw)
    assert type(lazy) is not Entry
    _same(lazy, decode_entry(entry.raw, strict=False))


def _outcome(decode: Callable[[bytes], Entry], raw: bytes) -> Entry | str:
    try:
        return decode(raw)
    except EntryError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize(
    "body",
    [
        cbor2.dumps({"b": 1, "a": 2}),  # keys out of order
        b"\x18\x05",  # 5 in a longer head than needed
        b"\xfb" + struct.pack(">d", 1.5),  # a float that fits in 16 bits
        b"\x9f\x01\xff",  # an indefinite-length array
        b"\x01\x01",  # trailing bytes after the body
        b"\x09\x01",  # an unknown key after the body
        b"\x82\x01",  # cut short
        b"\x81" * 40 + b"\x01",  # nested too deep
        b"\xa2\x61a\x01\x61a\x02",  # a duplicate key
        b"\xc1\x01",  # a tag outside the value model
        cbor2.dumps({"a": [1, 2.5, None, "x"]}),  # canonical: accepted
    ],
)
def test_strict_decoding_refuses_and_accepts_as_decode_entry_does(body: bytes) -> None:
    entry = sign_entry(ME, seq=3, prev=b"\x44" * 32, ts=9, collection="r/x", body=0)
    assert entry.content.endswith(b"\x07\x00")
    content = bytes([entry.content[0]]) + entry.content[1:-1] + body
    raw = _spoiled_content(entry, content)
    expected = _outcome(decode_entry, raw)
    got = _outcome(decode_strictly, raw)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, Entry)
        _same(got, expected)
