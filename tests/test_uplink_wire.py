"""The board ↔ cloud wire format: vectors, batch limits, topics, bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import encoding
from agent.entry import decode_entry, verify_entry
from agent.uplink.wire import (
    BYTES_HEADS,
    MAX_PAYLOAD,
    Batch,
    BatchError,
    Topics,
    batch_payload,
    batch_size,
    check_topic_level,
    decode_entry_batch,
    encode_entry_batch,
    entry_cost,
    parse_ack_body,
    parse_drop_body,
    parse_up_topic,
    split_batches,
)
from tests.vectors import make_uplink_vectors

VECTORS = Path(__file__).parent / "vectors" / "uplink.json"
DOC = Path(__file__).parent.parent / "docs" / "uplink.md"


def test_the_code_still_makes_the_published_vectors() -> None:
    assert json.loads(VECTORS.read_text()) == json.loads(
        json.dumps(make_uplink_vectors.build(), ensure_ascii=False)
    )


def test_vectors_decode_and_verify() -> None:
    v = json.loads(VECTORS.read_text())
    assert decode_entry_batch(bytes.fromhex(v["batch"]["payload"])) == [
        bytes.fromhex(e) for e in v["batch"]["entries"]
    ]
    (raw,) = decode_entry_batch(bytes.fromhex(v["ack"]["payload"]))
    ack = decode_entry(raw)
    verify_entry(ack)
    assert str(ack.author_id) == v["ack"]["cloud_node_id"] and parse_ack_body(ack.body) == 1
    drop = decode_entry(bytes.fromhex(v["drop"]["entry"]))
    verify_entry(drop)
    assert parse_drop_body(drop.body).entries == 3
    for bad in v["invalid"]:
        with pytest.raises(BatchError):
            decode_entry_batch(bytes.fromhex(bad["payload"]))


def test_the_spec_shows_the_vectors() -> None:
    v = json.loads(VECTORS.read_text())
    text = DOC.read_text()
    for payload in (v["batch"]["payload"], v["ack"]["payload"]):
        assert payload in text.replace("\n", "").replace(" ", "")


def test_oversized_batches_are_refused_by_name() -> None:
    with pytest.raises(BatchError, match="limit is 131072"):
        decode_entry_batch(b"\0" * (MAX_PAYLOAD + 1))


@given(st.lists(st.binary(min_size=1, max_size=16384), max_size=40))
def test_split_batches_fit_and_keep_order(entries: list[bytes]) -> None:
    batches = split_batches(entries, 40_000)
    assert [e for b in batches for e in b] == entries
    for b in batches:
        assert len(encode_entry_batch(b)) <= batch_size(b) <= 40_000
        assert decode_entry_batch(encode_entry_batch(b)) == b


# lengths on both sides of every CBOR head-size boundary
_EDGES = [0, 1, 23, 24, 25, 255, 256, 257, 65535, 65536, 65537]


@given(
    st.lists(
        st.one_of(st.binary(max_size=300), st.sampled_from(_EDGES).map(lambda n: b"\xff" * n)),
        max_size=300,
    )
)
def test_encode_batch_is_the_canonical_cbor_of_the_batch(entries: list[bytes]) -> None:
    expected = encoding.dumps([1, entries])
    assert encode_entry_batch(entries) == expected
    assert encode_entry_batch(memoryview(e) for e in entries) == expected
    heads = [BYTES_HEADS[len(e)] for e in entries]
    pieces = [x for h, e in zip(heads, entries, strict=True) for x in (h, e)]
    assert batch_payload(len(entries), pieces) == expected
    batch = Batch(expected, len(entries))
    assert encode_entry_batch(batch) is batch.payload  # an outbox batch is never encoded again
    assert len(batch) == len(entries) and list(batch) == entries  # read back from the payload
    assert all(entry_cost(len(e)) == len(h) + len(e) for h, e in zip(heads, entries))
    assert len(expected) <= batch_size(entries)


@pytest.mark.parametrize("count", [0, 1, 23, 24, 255, 256, 300])
def test_batch_array_heads_at_their_boundaries(count: int) -> None:
    entries = [bytes([i % 256]) * (i % 30) for i in range(count)]
    assert encode_entry_batch(entries) == encoding.dumps([1, entries])
    assert decode_entry_batch(encode_entry_batch(entries)) == entries


def test_topics() -> None:
    t = Topics("farm", "lc1abc")
    assert (t.up, t.ack, t.status) == (
        "lichen/v1/farm/lc1abc/up",
        "lichen/v1/farm/lc1abc/ack",
        "lichen/v1/farm/lc1abc/status",
    )
    assert parse_up_topic("lichen/v1/farm/lc1abc/up") == t
    assert Topics.up_filter(share_group="g") == "$share/g/lichen/v1/+/+/up"
    for bad in ("lichen/v1/farm/up", "lichen/v1/a/b/c/up", "other/v1/a/b/up", "lichen/v1/a/b/ack"):
        with pytest.raises(BatchError):
            parse_up_topic(bad)
    with pytest.raises(BatchError, match="fleet"):
        Topics("a/b", "n")
    with pytest.raises(BatchError, match="node"):
        Topics("f", "#")


@pytest.mark.parametrize(
    "body", [None, {}, {"seq": -1}, {"seq": "3"}, {"seq": 1.5}, [1], {"seq": True}]
)
def test_malformed_ack_bodies(body: object) -> None:
    with pytest.raises(BatchError):
        parse_ack_body(body)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"feeds": []},
        {"feeds": {"n": [[3, 1]]}},
        {"feeds": {"n": [[0, 1]]}},
        {"feeds": {"n": [[1]]}},
        {"feeds": {"n": [1, 2]}},
        {"feeds": {}, "collections": []},
    ],
)
def test_malformed_drop_bodies(body: object) -> None:
    with pytest.raises(BatchError):
        parse_drop_body(body)


@pytest.mark.parametrize("level", ["", "a/b", "a+b", "#", "farm/"])
def test_a_topic_level_check_names_the_rule(level: str) -> None:
    """One check for the uplink's fleet and the cloud's share group."""
    with pytest.raises(ValueError, match="must be one MQTT topic level: no / \\+ # and not empty"):
        check_topic_level(level)
    check_topic_level("farm-2")
