"""What docs/format.md states, checked against the code: the node id encoding
(made from the page's own recipe, with nothing but hashlib and base64, and
compared with its worked example), which double a scaled value is, nulls and
scaled columns, quality flags, what one reading is, and that the ack topic
carries only current versions."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import encoding
from agent.entry import decode_entry
from agent.identity import Identity, NodeId
from agent.readings import Columns, FieldSpec, decode_reading_batch, encode_columns
from agent.uplink.wire import Topics, decode_entry_batch, encode_entry_batch

from .conftest import seeded_identity
from .helpers.cloud import feed
from .test_cloud_ingest import FLEET, Cloud, up

FORMAT = (Path(__file__).parent.parent / "docs" / "format.md").read_text("utf-8")


def worked_example() -> dict[str, str]:
    section = FORMAT.split("## Node ids", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z0-9 ‖]+) \| `([^`]+)` \|$", section, re.MULTILINE)
    return dict(rows)


def node_id_by_the_recipe(key: bytes) -> str:
    """The page's recipe, followed by a stranger: no Lichen code."""
    check = hashlib.blake2b(key, digest_size=2, person=b"lichen-node-id").digest()
    return "lc1" + base64.b32encode(key + check).decode().rstrip("=").lower()


def test_the_worked_node_id_example_is_what_the_recipe_and_the_code_make() -> None:
    example = worked_example()
    identity = Identity(bytes.fromhex(example["seed"]))
    key = identity.node_id.key
    assert key.hex() == example["public key"]
    check = hashlib.blake2b(key, digest_size=2, person=b"lichen-node-id").digest()
    assert check.hex() == example["check"]
    assert (
        base64.b32encode(key + check).decode().rstrip("=").lower()
        == example["base32 of key ‖ check"]
    )
    assert node_id_by_the_recipe(key) == example["node id"] == str(identity.node_id)
    assert len(example["node id"]) == 58
    fingerprint = (
        base64.b32encode(hashlib.blake2b(key, digest_size=5, person=b"lichen-fp").digest())
        .decode()
        .lower()
    )
    assert f"{fingerprint[:4]}-{fingerprint[4:8]}" == example["fingerprint"]
    assert identity.node_id.fingerprint == example["fingerprint"]


@given(st.binary(min_size=32, max_size=32))
def test_any_key_made_into_an_id_by_the_recipe_parses_back(key: bytes) -> None:
    made = node_id_by_the_recipe(key)
    assert NodeId.parse(made).key == key and str(NodeId(key)) == made
    assert NodeId.parse("lc1" + made[3:].upper()).key == key  # either case after lc1


def test_one_node_one_spelling_a_set_spare_bit_is_refused() -> None:
    text = str(seeded_identity(1).node_id)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(text[-1])
    assert last & 0b111 == 0  # the 3 spare bits of the last character are zero
    for bit in (1, 2, 4):
        with pytest.raises(ValueError, match="misspelt"):
            NodeId.parse(text[:-1] + alphabet[last | bit])


def scaled(values: list[float | int | None], resolution: float) -> object:
    columns = Columns()
    for i, value in enumerate(values):
        columns.add(i, {} if value is None else {"x": value})
    return encode_columns(columns, {"x": FieldSpec(resolution=resolution)})["v"]["x"]


@given(st.integers(-(2**53), 2**53), st.integers(-12, -1))
def test_a_scaled_value_is_the_double_nearest_to_the_decimal(n: int, e: int) -> None:
    body = {"t": [0], "v": {"x": {"d": [n], "e": e}}}
    (reading,) = decode_reading_batch(body)
    value = reading.values["x"]
    assert type(value) is float
    exact = Fraction(n, 10**-e)
    nearest = float(exact)  # correctly rounded
    assert value == nearest
    # and no other double is closer
    for other in (math.nextafter(value, math.inf), math.nextafter(value, -math.inf)):
        assert abs(Fraction(other) - exact) >= abs(Fraction(value) - exact)


def test_multiplying_by_a_power_of_ten_would_differ_where_the_nearest_does_not() -> None:
    (reading,) = decode_reading_batch({"t": [0], "v": {"x": {"d": [3], "e": -1}}})
    assert reading.values["x"] == 0.3 and 3 * 0.1 != 0.3


def test_a_non_negative_exponent_gives_integers() -> None:
    assert scaled([20.0, 30.4, 41], 10) == {"d": [2, 1, 1], "e": 1}
    readings = decode_reading_batch({"t": [0, 1, 0], "v": {"x": {"d": [2, 1, 1], "e": 1}}})
    assert [r.values["x"] for r in readings] == [20, 30, 40]
    assert all(type(r.values["x"]) is int for r in readings)


def test_a_scaled_column_never_holds_null() -> None:
    assert scaled([21.5, 21.6], 0.1) == {"d": [215, 1], "e": -1}
    assert scaled([21.5, None, 21.7], 0.1) == [21.5, None, 21.7]  # plain for this batch
    column = scaled([21.5, math.nan], 0.1)
    assert isinstance(column, list) and column[0] == 21.5 and math.isnan(column[1])
    with pytest.raises(ValueError, match="non-integer"):
        decode_reading_batch({"t": [0, 1], "v": {"x": {"d": [215, None], "e": -1}}})
    assert scaled([2.0**60, 1.0], 1) == [2.0**60, 1.0]  # beyond 2^53: plain


def test_one_reading_is_one_position_and_flags_name_readings_by_index() -> None:
    columns = Columns()
    columns.add(300, {"a": 1.5}, "clipped")
    columns.add(100, {"a": 1.25, "b": "x"})
    columns.add(200, {"b": "y"}, "fault")
    body = encode_columns(columns, {})
    encoded = encoding.loads(encoding.dumps(body))
    assert encoded["q"] == {1: "fault", 2: "clipped"}  # indexes after sorting by time
    assert encoded["v"] == {"a": [1.25, None, 1.5], "b": ["x", "y", None]}
    readings = decode_reading_batch(encoded)
    assert [(r.ts_ms, r.values, r.quality) for r in readings] == [
        (100, {"a": 1.25, "b": "x"}, None),
        (200, {"b": "y"}, "fault"),
        (300, {"a": 1.5}, "clipped"),
    ]
    encoded["q"][7] = "nobody"  # an index that names no reading is ignored
    assert [r.quality for r in decode_reading_batch(encoded)] == [None, "fault", "clipped"]
    unflagged = Columns()
    unflagged.add(1, {"a": 1})
    assert "q" not in encode_columns(unflagged, {})


async def test_the_ack_topic_carries_only_current_versions(tmp_path: Path) -> None:
    cloud = await Cloud(tmp_path / "cloud.db").start()
    try:
        board = feed(seeded_identity(1), 5)
        await cloud.ingest(up(board), encode_entry_batch(board.raws(1, 2)))
        first = await cloud.ingestor.due_acks(1e9, force=True)
        await cloud.ingest(up(board), encode_entry_batch(board.raws(3, 4, 5)))
        second = await cloud.ingestor.due_acks(2e9, force=True)
    finally:
        await cloud.close()
    topic = Topics(FLEET, board.node).ack
    (earlier,) = [decode_entry(raw) for p in first if p.topic == topic for raw in
                  decode_entry_batch(p.payload)]  # fmt: skip
    entries = [decode_entry(raw) for p in second if p.topic == topic for raw in
               decode_entry_batch(p.payload)]  # fmt: skip
    assert len(entries) == 1  # the current version only, not the one it replaced
    (current,) = entries
    assert current.collection == "_acks" and current.doc_id == board.node
    assert current.body == {"seq": 5} and earlier.body == {"seq": 2}
    assert current.base == (earlier.hash,)  # it names a version the payload does not carry
