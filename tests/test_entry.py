"""Entries: signing, strict decoding, size caps, and tamper detection."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import encoding
from agent.entry import (
    DEFAULT_MAX_ENTRY_SIZE,
    SIGNING_DOMAIN,
    decode_entry,
    entry_hash,
    sign_entry,
    verify_entry,
)
from agent.errors import BadSignature, EntryError, MalformedEntry, OversizedEntry
from agent.identity import Identity

from .conftest import seeded_identity
from .strategies import collections, doc_ids, values

ME = seeded_identity(1)


def make(seq: int = 1, body: object = None, **kw: object):
    prev = None if seq == 1 else b"\x11" * 32
    return sign_entry(ME, seq=seq, prev=prev, ts=1 << 20, collection="c", body=body, **kw)  # type: ignore[arg-type]


@given(body=values, collection=collections, doc=st.none() | doc_ids, seq=st.integers(1, 2**40))
@pytest.mark.slow
def test_any_entry_round_trips(body: object, collection: str, doc: str | None, seq: int) -> None:
    prev = None if seq == 1 else bytes(32)
    entry = sign_entry(
        ME,
        seq=seq,
        prev=prev,
        ts=seq * 7,
        collection=collection,
        body=body,
        doc_id=doc,
        max_size=1 << 20,
    )
    back = decode_entry(entry.raw, max_size=1 << 20)
    verify_entry(back)
    assert back == entry and back.hash == entry_hash(entry.raw)
    assert (back.seq, back.prev, back.ts, back.collection, back.doc_id) == (
        seq,
        prev,
        seq * 7,
        collection,
        doc,
    )
    assert encoding.dumps(back.body) == encoding.dumps(body)


@given(st.data())
def test_any_single_bit_flip_is_detected(data: st.DataObject) -> None:
    entry = make(seq=2, body={"t": [1, 2, 3], "v": {"x": [1.5, 2.5, 3.5]}})
    bit = data.draw(st.integers(0, len(entry.raw) * 8 - 1))
    raw = bytearray(entry.raw)
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EntryError):
        verify_entry(decode_entry(bytes(raw)))


def test_signature_is_domain_separated() -> None:
    entry = make()
    assert ME.sign(SIGNING_DOMAIN + entry.content) == entry.signature
    assert ME.sign(entry.content) != entry.signature


def test_a_signature_by_someone_else_is_refused() -> None:
    entry = make()
    other = Identity(b"\x09" * 32)
    forged = entry.raw[:-64] + other.sign(SIGNING_DOMAIN + entry.content)
    with pytest.raises(BadSignature, match="signature does not verify"):
        verify_entry(decode_entry(forged))


def test_size_cap_is_enforced_on_write_and_on_receipt() -> None:
    with pytest.raises(OversizedEntry, match="cap is 16384"):
        make(body="x" * DEFAULT_MAX_ENTRY_SIZE)
    big = sign_entry(ME, seq=1, prev=None, ts=1, collection="c", body="x" * 20000, max_size=1 << 16)
    with pytest.raises(OversizedEntry, match=f"{len(big.raw)} bytes"):
        decode_entry(big.raw)
    assert decode_entry(big.raw, max_size=1 << 16) == big


def _envelope(content_map: dict[int, object]) -> bytes:
    content = cbor2.dumps(content_map, canonical=True)
    sig = ME.sign(SIGNING_DOMAIN + content)
    return cbor2.dumps([content, sig], canonical=True)


GOOD = {0: 1, 1: ME.node_id.key, 2: 1, 4: 5, 5: "c", 7: None}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({0: 2}, "version 2 is not supported"),
        ({1: b"short"}, "author"),
        ({2: 0}, "seq 0"),
        ({2: -3}, "seq -3"),
        ({2: "1"}, "seq '1'"),
        ({3: b"\x00" * 32}, "first entry of a feed has no prev"),
        ({2: 2}, "prev is not a 32-byte hash"),
        ({4: -1}, "timestamp"),
        ({5: ""}, "collection"),
        ({5: "a//b"}, "collection"),
        ({5: "a b"}, "collection"),
        ({6: ""}, "document id"),
        ({6: "a\nb"}, "control"),
        ({8: [b"\x00" * 32]}, "base without a document id"),
        ({6: "d", 8: [b"\x01" * 32, b"\x00" * 32]}, "sorted"),
        ({6: "d", 8: []}, "sorted"),
        ({9: 1}, "unknown keys"),
        ({"x": 1}, "unknown keys"),
    ],
)
def test_malformed_content_is_refused_with_its_reason(
    change: dict[object, object], message: str
) -> None:
    fields = dict(GOOD)
    fields.update(change)  # type: ignore[arg-type]
    with pytest.raises(MalformedEntry, match=message):
        decode_entry(_envelope(fields))


def test_missing_body_is_refused() -> None:
    fields = dict(GOOD)
    del fields[7]
    with pytest.raises(MalformedEntry, match="no body"):
        decode_entry(_envelope(fields))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not an entry"),
        (b"\x83\x40\x40\x40", "not an entry"),
        (b"\x82\x01\x02\x03", "not a definite-length byte string"),
        (b"\x82\x58\x05abcde", "shortest form"),
    ],
)
def test_broken_envelopes_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedEntry, match=message):
        decode_entry(raw)


def test_every_truncation_is_detected() -> None:
    entry = make(seq=3, body={"text": "hello"}, doc_id="d", base=[b"\x05" * 32])
    for cut in range(len(entry.raw)):
        with pytest.raises(MalformedEntry):
            decode_entry(entry.raw[:cut])
    with pytest.raises(MalformedEntry, match="trailing"):
        decode_entry(entry.raw + b"\x00")


def test_non_canonical_content_is_refused_even_if_signed() -> None:
    content = bytes.fromhex("a6") + b"".join(
        cbor2.dumps(k) + cbor2.dumps(v) for k, v in sorted(GOOD.items(), reverse=True)
    )
    sig = ME.sign(SIGNING_DOMAIN + content)
    raw = cbor2.dumps([content, sig])
    with pytest.raises(MalformedEntry, match="canonical"):
        decode_entry(raw)


def test_invalid_fields_are_refused_when_signing() -> None:
    with pytest.raises(ValueError, match="prev"):
        sign_entry(ME, seq=2, prev=None, ts=1, collection="c", body=1)
    with pytest.raises(ValueError, match="collection"):
        sign_entry(ME, seq=1, prev=None, ts=1, collection="/bad", body=1)
    with pytest.raises(ValueError, match="base"):
        sign_entry(ME, seq=1, prev=None, ts=1, collection="c", body=1, base=[b"\x00" * 32])
    with pytest.raises(ValueError, match="stored"):
        sign_entry(ME, seq=1, prev=None, ts=1, collection="c", body={1, 2})
