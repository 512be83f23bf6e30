"""Reading batches: columnar, compact, and exact to the declared resolution."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import encoding
from agent.batcher import PendingBatch, ReadingBatcher, drafts_for
from agent.entry import sign_entry
from agent.readings import (
    Columns,
    FieldSpec,
    Reading,
    decode_reading_batch,
    encode_columns,
    encode_reading_batch,
    resolution_exponent,
)

from .conftest import seeded_identity

plain_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**45), st.dictionaries(st.sampled_from("abc"), plain_values, min_size=1)
        ),
        min_size=1,
        max_size=30,
    )
)
def test_plain_batches_round_trip(samples: list[tuple[int, dict[str, object]]]) -> None:
    readings = [Reading(ts, values) for ts, values in samples]  # type: ignore[arg-type]
    body = encode_reading_batch(readings, {})
    decoded = decode_reading_batch(encoding.loads(encoding.dumps(body)))
    expected = sorted(readings, key=lambda r: r.ts_ms)
    assert [d.ts_ms for d in decoded] == [r.ts_ms for r in expected]
    for d, r in zip(decoded, expected):
        assert d.values == {k: v for k, v in r.values.items() if v is not None}


@given(
    st.lists(st.floats(-1000, 1000, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0]),
)
def test_scaled_columns_keep_values_to_the_resolution(
    values: list[float], resolution: float
) -> None:
    readings = [Reading(1000 + i, {"x": v}) for i, v in enumerate(values)]
    body = encode_reading_batch(readings, {"x": FieldSpec(resolution=resolution)})
    assert isinstance(body["v"]["x"], dict)
    decoded = decode_reading_batch(encoding.loads(encoding.dumps(body)))
    for d, v in zip(decoded, values):
        assert math.isclose(d.values["x"], v, abs_tol=resolution / 2 + 1e-9)  # type: ignore[arg-type]


def test_decimal_values_come_back_exactly() -> None:
    temps = [21.37, 21.38, 21.41, -3.05, 0.0]
    body = encode_reading_batch(
        [Reading(i, {"t": t}) for i, t in enumerate(temps)], {"t": FieldSpec(resolution=0.01)}
    )
    assert [d.values["t"] for d in decode_reading_batch(body)] == temps


def test_columns_are_compact() -> None:
    readings = [
        Reading(1_795_000_000_000 + 100 * i, {"temperature": 21.37 + (i % 3) / 100})
        for i in range(10)
    ]
    scaled = encoding.dumps(encode_reading_batch(readings, {"temperature": FieldSpec("°C", 0.01)}))
    plain = encoding.dumps(encode_reading_batch(readings, {"temperature": FieldSpec("°C")}))
    assert len(scaled) < len(plain) - 60


def test_quality_flags_and_units_are_kept() -> None:
    body = encode_reading_batch(
        [Reading(1, {"v": 1}), Reading(2, {"v": 2}, quality="clipped")],
        {"v": FieldSpec("V")},
        units=True,
    )
    assert body["u"] == {"v": "V"} and body["q"] == {1: "clipped"}
    decoded = decode_reading_batch(encoding.loads(encoding.dumps(body)))
    assert [d.quality for d in decoded] == [None, "clipped"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"t": [], "v": {}}, "non-empty"),
        ({"t": [1.5], "v": {}}, "integers"),
        ({"t": [1, 2], "v": {"x": [1]}}, "1 values for 2 times"),
        ({"t": [1], "v": {"x": {"e": "a", "d": [1]}}}, "integer 'e'"),
        ({"t": [1], "v": {"x": {"e": 0, "d": [1.5]}}}, "non-integer"),
        ({"t": [1], "v": {"x": 3}}, "neither"),
        ({"v": {}}, "not a reading batch"),
    ],
)
def test_malformed_batches_say_what_is_wrong(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_reading_batch(body)


def test_resolution_must_be_a_power_of_ten() -> None:
    assert resolution_exponent(0.01) == -2 and resolution_exponent(100) == 2
    for bad in (0.25, 0, -1, 3):
        with pytest.raises(ValueError, match="power of ten"):
            FieldSpec(resolution=bad)


def test_times_are_delta_of_delta_coded() -> None:
    body = encode_reading_batch([Reading(1000 + 100 * i + (i % 2), {"v": i}) for i in range(6)], {})
    assert body["t"] == [1000, 101, -2, 2, -2, 2]
    assert [r.ts_ms for r in decode_reading_batch(body)] == [1000, 1101, 1200, 1301, 1400, 1501]


def test_missing_fields_are_null_in_their_column() -> None:
    body = encode_reading_batch(
        [Reading(1, {"a": 1}), Reading(2, {"b": "x"}), Reading(3, {"a": 3, "b": "y"})], {}
    )
    assert body["v"] == {"a": [1, None, 3], "b": [None, "x", "y"]}
    assert [r.values for r in decode_reading_batch(body)] == [
        {"a": 1},
        {"b": "x"},
        {"a": 3, "b": "y"},
    ]


def test_batcher_drops_the_oldest_tenth_past_the_cap_and_counts() -> None:
    batcher = ReadingBatcher(max_pending=10)
    for i in range(13):
        batcher.add("c", i, {"v": i}, {})
    (batch,) = batcher.take_all()
    assert batch.columns.times.tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert batch.dropped == 3 and batcher.total_dropped == 3 and batcher.pending == 0


def test_urgent_readings_flush_only_their_collection() -> None:
    batcher = ReadingBatcher()
    batcher.add("a", 1, {"v": 1}, {})
    assert batcher.add("b", 2, {"open": True}, {}, urgent=True)
    urgent = batcher.take_urgent()
    assert [b.collection for b in urgent] == ["b"]
    assert [b.collection for b in batcher.take_all()] == ["a"]


def test_put_back_keeps_order_and_the_cap() -> None:
    batcher = ReadingBatcher(max_pending=5)
    for i in range(3):
        batcher.add("c", i, {"v": i}, {}, quality="q" if i == 1 else None)
    failed = batcher.take_all()
    batcher.add("c", 10, {"v": 10}, {})
    batcher.add("c", 11, {"v": 11}, {})
    batcher.add("c", 12, {"v": 12}, {})
    batcher.put_back(failed)
    (batch,) = batcher.take_all()
    assert batch.columns.times.tolist() == [1, 2, 10, 11, 12] and batch.dropped == 1
    assert batch.columns.quality == {0: "q"}


def test_big_batches_are_split_to_fit_the_entry_cap() -> None:
    batch = PendingBatch("readings/x", {})
    for i in range(300):
        batch.columns.add(i, {"s": "x" * 100})
    drafts, too_large = drafts_for(batch, max_entry_size=4096)
    assert len(drafts) > 1 and too_large == 0
    assert sum(len(decode_reading_batch(d.body)) for d in drafts) == 300
    me = seeded_identity(1)
    for d in drafts:  # every piece really fits once signed
        sign_entry(
            me, seq=2, prev=bytes(32), ts=2**50, collection=d.collection, body=d.body, max_size=4096
        )


def test_a_reading_too_large_for_any_entry_is_left_out_and_counted() -> None:
    batch = PendingBatch("readings/x", {})
    for i in range(10):
        batch.columns.add(i, {"s": ("y" * 1000 if i == 4 else "x") * 5})
    drafts, too_large = drafts_for(batch, max_entry_size=2048)
    kept = [r.ts_ms for d in drafts for r in decode_reading_batch(d.body)]
    assert too_large == 1 and kept == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_columns_keep_numbers_raw_and_widen_for_anything_else() -> None:
    columns = Columns()
    columns.add(1, {"f": 1.5, "i": 7, "s": "a"})
    columns.add(2, {"f": 2.5, "i": 2**63, "s": "b"})  # too big for int64: becomes a list
    columns.add(3, {"f": 3.5})  # missing values become null
    assert type(columns.columns["f"]).__name__ == "array"
    assert columns.values("i") == [7, 2**63, None] and columns.values("s") == ["a", "b", None]
    body = encode_columns(columns, {})
    assert [r.values for r in decode_reading_batch(encoding.loads(encoding.dumps(body)))] == [
        {"f": 1.5, "i": 7, "s": "a"},
        {"f": 2.5, "i": 2**63, "s": "b"},
        {"f": 3.5},
    ]
