"""Strict entry decoding and the ENTRY frame parser accept exactly what the
reference accepts (see test_canonical_fast.py for the value-level checks).

Reference for entries: the structure checks of ``decode_entry(strict=False)``,
the body inside the model, and the content equal to ``encode_content`` of its
fields with the body as ``cbor2.dumps(body, canonical=True)`` — the check
strict decoding made before the fast path. Reference for frames: the generic
message decoder (strict canonical ``encoding.loads`` of the whole frame).
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import encoding
from agent.entry import decode_entry, encode_content, sign_entry
from agent.errors import EncodingError, EntryError, MalformedEntry, RemoteProtocolError
from agent.readings import FieldSpec, Reading, encode_reading_batch
from agent.sync import EntryData, encode_message, wire
from bench.sync_bench import reading_body

from .conftest import seeded_identity
from .strategies import values
from .test_canonical_fast import head

ME = seeded_identity(4)


# Entries: strict decode_entry against the reference, on mutated content bytes.


def reference_decode(raw: bytes) -> object:
    """The outcome of strict decoding by the reference: the entry's bytes, or the error.
    (The content map itself is rebuilt by encode_content: a null prev or doc, or a
    version of True, is canonical CBOR yet not a canonical entry.)"""
    try:
        entry = decode_entry(raw, strict=False, max_size=1 << 20)
        try:
            encoding.check_value(entry.body, "body")
        except EncodingError as exc:
            raise MalformedEntry(str(exc), entry.where) from None
        canonical = encode_content(
            author=entry.author,
            seq=entry.seq,
            prev=entry.prev,
            ts=entry.ts,
            collection=entry.collection,
            doc_id=entry.doc_id,
            body=cbor2.dumps(entry.body, canonical=True),
            base=entry.base,
        )
        if canonical != entry.content:
            raise MalformedEntry("entry content is not in canonical CBOR form", entry.where)
    except EntryError as exc:
        return (type(exc), str(exc))
    return entry.raw


def strict_decode(raw: bytes) -> object:
    try:
        return decode_entry(raw, max_size=1 << 20).raw
    except EntryError as exc:
        return (type(exc), str(exc))


bodies = values | st.integers(0, 10**6).map(reading_body)


@given(
    bodies, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3)
)
def test_strict_decode_agrees_on_mutated_entries(
    body: object, changes: list[tuple[int, int]]
) -> None:
    entry = sign_entry(ME, seq=2, prev=bytes(32), ts=9, collection="c", body=body, max_size=1 << 20)
    assert strict_decode(entry.raw) == reference_decode(entry.raw) == entry.raw
    raw = bytearray(entry.raw)
    start = len(entry.raw) - 66 - len(entry.content)
    for where, byte in changes:  # replace content bytes: the envelope stays valid
        raw[start + where % len(entry.content)] = byte
    assert strict_decode(bytes(raw)) == reference_decode(bytes(raw))


@pytest.mark.parametrize(("key", "value"), [(0, True), (3, None), (6, None)])
def test_canonical_cbor_that_is_not_a_canonical_entry_is_refused(key: int, value: object) -> None:
    """version True, a null prev or doc: canonical CBOR, but not the entry's encoding."""
    entry = sign_entry(ME, seq=1, prev=None, ts=9, collection="c", body=reading_body(1))
    fields = cbor2.loads(entry.content)
    fields[key] = value
    content = cbor2.dumps(fields, canonical=True)
    raw = b"\x82" + head(2, len(content)) + content + b"\x58\x40" + entry.signature
    with pytest.raises(MalformedEntry, match="not in canonical CBOR form"):
        decode_entry(raw)
    assert strict_decode(raw) == reference_decode(raw)


def test_real_reading_batches_take_the_fast_path() -> None:
    fields = {"temperature": FieldSpec(unit="°C", resolution=0.01), "humidity": FieldSpec()}
    readings = [
        Reading(1_700_000_000_000 + 997 * i, {"temperature": 18 + i / 7, "humidity": 40 + i / 4})
        for i in range(60)
    ]
    readings[3] = Reading(readings[3].ts_ms, readings[3].values, quality="clipped")
    body = encode_reading_batch(readings, fields, units=True)  # scaled ints, floats, int keys ("q")
    entry = sign_entry(ME, seq=1, prev=None, ts=9, collection="readings/x", body=body)
    decoded = decode_entry(entry.raw)
    assert decoded == entry
    assert encoding.dumps_decoded(decoded.body) == cbor2.dumps(body, canonical=True)


# Sync frames: the ENTRY hand parser against the generic decoder.


def outcome(decode: Any, body: bytes) -> object:
    try:
        message = decode(body)
    except RemoteProtocolError as exc:
        return str(exc)
    return message.entry.raw if isinstance(message, EntryData) else message


def decode_generic(body: bytes) -> object:
    return wire._decode_any(body, 16 * 1024)


@given(bodies, st.data())
def test_entry_frames_parse_as_the_generic_decoder_does(body: object, data: st.DataObject) -> None:
    entry = sign_entry(ME, seq=1, prev=None, ts=9, collection="c", body=body, max_size=1 << 20)
    frame = encode_message(EntryData(entry=entry))
    variants = [
        frame,
        frame[:-1],
        frame + b"\x00",
        b"\x82\x05" + head(2, len(entry.raw), 1) + entry.raw,
    ]
    variants += [
        b"\x82\x18\x05" + frame[2:],
        b"\x83\x05" + frame[2:] + b"\x00",
        b"\x82\x05\x5f" + frame[3:],
    ]
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[data.draw(st.integers(0, min(len(frame), 12) - 1))] = data.draw(st.integers(0, 255))
    variants.append(bytes(mutated))
    for variant in variants:
        assert outcome(wire.decode_message, variant) == outcome(decode_generic, variant)
    assert outcome(wire.decode_message, frame) == entry.raw


@pytest.mark.parametrize(
    "raw", ["", "82", "8205", "820540", "820558", "82055800", "8205590000", "82055a00000001aa"]
)
def test_short_and_odd_entry_frames(raw: str) -> None:
    body = bytes.fromhex(raw)
    assert outcome(wire.decode_message, body) == outcome(decode_generic, body)
