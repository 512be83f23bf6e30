"""The fast canonical check accepts exactly what the reference accepts.

Reference: the bytes decode (strictly) to a value of the model, and
``cbor2.dumps(value, canonical=True)`` gives the bytes back. The fast path —
:func:`agent.encoding.dumps_decoded`, behind :func:`~agent.encoding.loads` and
strict :func:`~agent.entry.decode_entry` — must agree with it on canonical
encodings, on deliberately non-canonical encodings of the same values, on
canonical encodings of values outside the model, and on random mutations.
Entries and sync frames: test_canonical_entry_wire.py.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import encoding
from agent.errors import EncodingError

from .strategies import values

INT_MIN, INT_MAX = -(2**64), 2**64 - 1
DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)
keys = st.text(max_size=30) | st.integers(INT_MIN, INT_MAX)
maps = st.dictionaries(keys, values, min_size=2) | st.dictionaries(
    st.text("abz"), values, min_size=2
)


def in_model(value: Any, depth: int = 0) -> bool:
    """The value model, written independently of agent.encoding."""
    if value is None or type(value) in (bool, str, bytes, float):
        return True
    if type(value) is int:
        return INT_MIN <= value <= INT_MAX
    if depth >= encoding.MAX_DEPTH or type(value) not in (list, dict):
        return False
    if type(value) is dict and not all(
        type(k) is str or (type(k) is int and INT_MIN <= k <= INT_MAX) for k in value
    ):
        return False
    items = value.values() if type(value) is dict else value
    return all(in_model(item, depth + 1) for item in items)


def strict_loads(data: bytes, max_depth: int = encoding.MAX_DEPTH + 1) -> Any:
    return cbor2.loads(
        data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=max_depth
    )


def reference_accepts(data: bytes) -> bool:
    try:
        value = strict_loads(data)
    except DECODE_ERRORS:
        return False
    return in_model(value) and cbor2.dumps(value, canonical=True) == data


def fast_accepts(data: bytes) -> bool:
    """The fast path alone (no fallback): decode, re-encode fast, compare."""
    try:
        value = strict_loads(data)
    except DECODE_ERRORS:
        return False
    return encoding.dumps_decoded(value) == data


def loads_accepts(data: bytes) -> bool:
    try:
        encoding.loads(data)
    except EncodingError:
        return False
    return True


def agree(data: bytes) -> bool:
    """Assert the three agree; return the verdict."""
    expected = reference_accepts(data)
    assert fast_accepts(data) == expected, data.hex()
    assert loads_accepts(data) == expected, data.hex()
    return expected


# A deliberately sloppy encoder: every choice it makes may be the canonical one
# or not (overlong heads, bignums for small integers, wide floats, odd NaNs,
# unsorted keys, a self-describe tag). Bytes that differ from the canonical
# encoding must be refused by both checks.


def head(major: int, n: int, widen: int = 0) -> bytes:
    widths = [
        w
        for limit, w in ((24, 0), (1 << 8, 1), (1 << 16, 2), (1 << 32, 4), (1 << 64, 8))
        if n < limit
    ]
    width = widths[min(widen, len(widths) - 1)]
    if width == 0:
        return bytes([major << 5 | n])
    return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[width]]) + n.to_bytes(width, "big")


DEVIATIONS = ("widen", "tag", "bignum", "float64", "single", "nan", "unsorted", "simple")
NANS = [
    b"\xf9\x7e\x01",
    b"\xf9\xfe\x00",
    b"\xfa\x7f\xc0\x00\x01",
    b"\xfb\x7f\xf8" + bytes(5) + b"\x01",
]


def sloppy(value: Any, draw: Any, allowed: tuple[str, ...]) -> bytes:
    """``value`` encoded with, at each node, one of the ``allowed`` deviations or none."""
    how = draw(st.sampled_from(("none", *allowed)))
    widen = draw(st.integers(1, 4)) if how == "widen" else 0
    out = b"\xd9\xd9\xf7" if how == "tag" else b""  # tag 55799: decodes to the value itself
    if type(value) is int:
        major, n = (0, value) if value >= 0 else (1, -1 - value)
        if how == "bignum":  # perhaps with a leading zero byte
            body = n.to_bytes(max(1, (n.bit_length() + 7) // 8) + draw(st.integers(0, 1)), "big")
            return out + bytes([0xC2 + major]) + head(2, len(body)) + body
        return out + head(major, n, widen)
    if type(value) is float:
        canonical = cbor2.dumps(value, canonical=True)
        if how == "float64":
            return out + b"\xfb" + struct.pack(">d", value)  # as plain mode writes it
        if how == "single" and canonical[0] == 0xF9 and not math.isnan(value):
            return out + b"\xfa" + struct.pack(">f", value)  # half widened to single
        if how == "nan" and math.isnan(value):
            nan: bytes = draw(st.sampled_from(NANS))
            return out + nan
        return out + canonical
    if type(value) in (str, bytes):
        data = value.encode() if type(value) is str else value
        return out + head(3 if type(value) is str else 2, len(data), widen) + data
    if type(value) is list:
        items = b"".join(sloppy(item, draw, allowed) for item in value)
        return out + head(4, len(value), widen) + items
    if type(value) is dict:
        pairs = [
            (cbor2.dumps(k, canonical=True), sloppy(v, draw, allowed)) for k, v in value.items()
        ]
        pairs.sort(key=lambda p: (len(p[0]), p[0]))
        if how == "unsorted" and len(pairs) > 1:
            pairs = draw(st.permutations(pairs))
        return out + head(5, len(pairs), widen) + b"".join(k + v for k, v in pairs)
    if how == "simple" and value is not None:  # false/true as two-byte simple values
        return out + bytes([0xF8, 20 + (value is True)])
    return out + cbor2.dumps(value, canonical=True)


@given(values | maps)
@pytest.mark.slow
def test_canonical_encodings_are_accepted_on_the_fast_path(value: object) -> None:
    data = cbor2.dumps(value, canonical=True)
    assert agree(data)
    assert encoding.dumps_decoded(cbor2.loads(data)) == data


@settings(max_examples=300)
@given(values | maps, st.lists(st.sampled_from(DEVIATIONS), min_size=1, max_size=2), st.data())
@pytest.mark.slow
def test_sloppy_encodings_are_refused_by_both(
    value: object, allowed: list[str], data: st.DataObject
) -> None:
    raw = sloppy(value, data.draw, tuple(allowed))
    assert agree(raw) == (raw == cbor2.dumps(value, canonical=True))


@given(maps, st.data())
@pytest.mark.slow
def test_maps_with_keys_out_of_canonical_order_are_refused(value: Any, data: st.DataObject) -> None:
    pairs = sorted(
        ((cbor2.dumps(k), cbor2.dumps(v, canonical=True)) for k, v in value.items()),
        key=lambda pair: (len(pair[0]), pair[0]),
    )
    order = data.draw(st.permutations(range(len(pairs))).filter(lambda p: list(p) != sorted(p)))
    raw = head(5, len(pairs)) + b"".join(pairs[i][0] + pairs[i][1] for i in order)
    for wrapped in (raw, b"\x82\xf9\x3e\x00" + raw, b"\xa1\x61\x61" + raw):
        assert not agree(wrapped)


@settings(max_examples=200)
@given(
    values | maps,
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 2)), max_size=4),
)
@pytest.mark.slow
def test_mutated_encodings_agree(value: object, mutations: list[tuple[int, int, int]]) -> None:
    raw = bytearray(cbor2.dumps(value, canonical=True))
    for where, byte, how in mutations:
        at = where % (len(raw) + 1)
        if how == 0 and at < len(raw):
            raw[at] = byte
        elif how == 1:
            raw.insert(at, byte)
        elif at < len(raw):
            del raw[at]
    agree(bytes(raw))


@pytest.mark.slow
def test_every_half_float_and_float_edges_encode_as_cbor2_canonical() -> None:
    edges = [2.0**-24, 2.0**-25, 2.0**-14, 65504.0, 65520.0, 2.0**-126, 2.0**-149, 2.0**-150]
    edges += [struct.unpack(">f", b"\x7f\x7f\xff\xff")[0], 3.4028235677973366e38, 1e300, 1e-300]
    floats = [struct.unpack(">e", bits.to_bytes(2, "big"))[0] for bits in range(1 << 16)]
    for f in floats + edges + [-x for x in edges]:
        expected = cbor2.dumps({"a": f}, canonical=True)
        assert encoding.dumps_decoded({"a": f}) == expected, f
        assert encoding.dumps_decoded([{"b": f}, [f, 1]]) == cbor2.dumps(
            [{"b": f}, [f, 1]], canonical=True
        )


@given(st.integers(0, 2**32 - 1) | st.integers(0, 2**64 - 1))
def test_float_bit_patterns_encode_as_cbor2_canonical(bits: int) -> None:
    width = ">f" if bits < 2**32 else ">d"
    f = struct.unpack(width, bits.to_bytes(4 if width == ">f" else 8, "big"))[0]
    assert encoding.dumps_decoded({"a": f, "b": [{"c": f}]}) == cbor2.dumps(
        {"a": f, "b": [{"c": f}]}, canonical=True
    )
    assert agree(b"\xa1\x61a" + cbor2.dumps(f, canonical=True))


@given(values)
def test_dumps_is_cbor2_canonical(value: object) -> None:
    assert encoding.dumps(value) == cbor2.dumps(value, canonical=True)
    ordered = cbor2.loads(cbor2.dumps(value, canonical=True))  # maps now in canonical order
    assert encoding.dumps(ordered) == cbor2.dumps(value, canonical=True)


foreign = (
    st.integers(INT_MAX + 1, 2**70)
    | st.integers(-(2**70), INT_MIN - 1)
    | st.builds(cbor2.CBORTag, st.integers(256, 2**16), st.integers(0, 9))
    | st.sampled_from([cbor2.CBORSimpleValue(0), cbor2.CBORSimpleValue(255), cbor2.undefined])
)
with_foreign = st.recursive(
    foreign,
    lambda children: (
        st.tuples(st.lists(values, max_size=3), children).map(lambda p: [*p[0], p[1]])
        | st.tuples(st.dictionaries(st.text("abz", max_size=3), values, max_size=3), children).map(
            lambda p: {**p[0], "zzzz": p[1]}
        )
    ),
    max_leaves=4,
)


@given(with_foreign)
def test_canonical_bytes_of_values_outside_the_model_are_refused(value: object) -> None:
    assert not agree(cbor2.dumps(value, canonical=True))


@pytest.mark.parametrize(
    "raw",
    [
        "a20102 0001",
        "a2 61 62 01 61 61 02",
        "a2 1818 02 20 01",
        "a2 1903e8 01 61 61 02",
        "c249010000000000000000",
        "c34100",
        "81c24101",
        "a1 c24101 00",
        "a1 f5 00",
        "a1 41 00 00",
        "f814",
        "d81c 81 d81d 00",
        "f97e01",
        # canonical for what cbor2 decodes, but outside the model
        "81 c249010000000000000000",
        "a1 6161 c349010000000000000000",
        "a1 c249010000000000000000 f6",
        "81 d8ff 00",
        "a1 6161 d8ff 00",
        "81 e0",
        "81 f7",
        "81" * 32 + "80",
    ],
)
def test_known_non_canonical_or_foreign_bytes(raw: str) -> None:
    assert not agree(bytes.fromhex(raw.replace(" ", "")))


@pytest.mark.parametrize(
    "raw",
    [
        "81" * 31 + "80",
        "a2 20 01 1818 02",
        "a2 6161 02 1903e8 01",
        "a2 61 7a 01 62 c3 a9 02",
        "f9 7c00",
    ],
)
def test_known_canonical_bytes(raw: str) -> None:
    data = bytes.fromhex(raw.replace(" ", ""))
    assert agree(data)
    assert encoding.dumps_decoded(cbor2.loads(data)) == data
