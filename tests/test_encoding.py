"""Deterministic CBOR: one encoding per value, everything else refused."""

from __future__ import annotations

import datetime
import decimal

import cbor2
import pytest
from hypothesis import given

from agent import encoding
from agent.errors import EncodingError

from .strategies import values


@given(values)
def test_any_value_round_trips_to_identical_bytes(value: object) -> None:
    data = encoding.dumps(value)
    decoded = encoding.loads(data)
    assert encoding.dumps(decoded) == data  # NaN-safe equality: compare encodings


@pytest.mark.parametrize(
    ("hex_bytes", "why"),
    [
        ("1817", "integer 23 in two bytes instead of one"),
        ("a20102 0001", "map keys not sorted"),
        ("a2010101 02", "duplicate map key"),
        ("9f0102ff", "indefinite-length array"),
        ("5f41014102ff", "indefinite-length byte string"),
        ("fb3ff8000000000000", "1.5 as float64 where float16 is exact"),
        ("c11a514b67b0", "tag 1 (epoch date)"),
        ("d9d9f701", "self-describe tag 55799"),
        ("c249010000000000000000", "bignum beyond 64 bits"),
        ("0102", "trailing bytes"),
        ("a1f401", "boolean map key"),
        ("a14100 01", "byte-string map key"),
        ("", "empty input"),
        ("62ff", "truncated text"),
        ("62fffe", "invalid UTF-8"),
    ],
)
def test_non_canonical_or_foreign_encodings_are_refused(hex_bytes: str, why: str) -> None:
    with pytest.raises(EncodingError):
        encoding.loads(bytes.fromhex(hex_bytes.replace(" ", "")))


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2026, 1, 1),
        decimal.Decimal("1.5"),
        {1, 2},
        2**64,
        -(2**64) - 1,
        {(1, 2): 3},
        {b"k": 1},
        object(),
    ],
)
def test_values_outside_the_model_are_refused_on_encode(value: object) -> None:
    with pytest.raises(EncodingError) as info:
        encoding.dumps(value)
    assert "value" in str(info.value)


def test_error_names_the_path_of_the_bad_part() -> None:
    with pytest.raises(EncodingError, match=r"body\['a'\]\[1\]"):
        encoding.check_value({"a": [1, {2}]}, "body")


def test_nesting_depth_is_bounded() -> None:
    deep: object = 1
    for _ in range(encoding.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(EncodingError, match="deeper"):
        encoding.dumps(deep)
    raw = b"\x81" * 500 + b"\x01"
    with pytest.raises(EncodingError):
        encoding.loads(raw)


def test_matches_cbor2_canonical_for_plain_values() -> None:
    value = {"b": [1, 2.5, None], "a": {"x": b"\x00"}, 3: True}
    assert encoding.dumps(value) == cbor2.dumps(value, canonical=True)
