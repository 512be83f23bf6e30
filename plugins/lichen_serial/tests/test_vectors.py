"""The shared frame vectors (tests/vectors/bridge_frames.*), from the Python side.

The C side (``make -C firmware-bridge test``) checks the same frames from
the .txt twin, so encoder and decoder on both sides cannot drift apart.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from lichen_serial.frames import (
    NEED_DATA,
    BadFrame,
    Describe,
    Event,
    FrameDecoder,
    Readings,
    Request,
    UnknownFrame,
)
from lichen_serial.payloads import Channel, FrameEncoder, Kind, RawValue, Status

ROOT = Path(__file__).resolve().parents[3]
VECTORS_DIR = ROOT / "tests" / "vectors"
VECTORS: dict[str, Any] = json.loads((VECTORS_DIR / "bridge_frames.json").read_text("utf-8"))
GENERATOR = runpy.run_path(str(VECTORS_DIR / "make_bridge_vectors.py"))
PROTOCOL = ROOT / "firmware-bridge" / "PROTOCOL.md"


def events_of(wire: bytes, *, one_byte_at_a_time: bool = False) -> list[Event]:
    decoder = FrameDecoder()
    events: list[Event] = []
    for piece in [wire[i : i + 1] for i in range(len(wire))] if one_byte_at_a_time else [wire]:
        decoder.receive_data(piece)
        while (event := decoder.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            events.append(event)
    return events


def encode(v: dict[str, Any]) -> bytes:
    encoder = FrameEncoder(v["boot_id"], v["counter"])
    if v["describe"] is not None:
        d = v["describe"]
        channel = Channel(d["name"], d["unit"], d["device_class"], d["exponent"], Kind(d["kind"]))
        return encoder.describe([channel] * d["count"], d["id"])
    if v["readings"] is not None:
        return encoder.readings([RawValue(c, raw, Status(s)) for c, s, raw in v["readings"]])
    if v["request"] is not None:
        return encoder.request(v["request"])
    return encoder.frame(v["type"], bytes.fromhex(v["payload"]))


def test_the_files_are_what_the_generator_makes() -> None:
    data = GENERATOR["build"]()
    assert data == VECTORS
    text = (VECTORS_DIR / "bridge_frames.txt").read_text("utf-8")
    assert GENERATOR["render_text"](data) == text
    assert len(VECTORS["valid"]) >= 10 and len(VECTORS["invalid"]) >= 20


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["name"])
def test_encoder_produces_the_vector_bytes(v: dict[str, Any]) -> None:
    assert encode(v).hex() == v["wire"]


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["name"])
@pytest.mark.parametrize("one_byte_at_a_time", [False, True])
def test_decoder_reads_the_vector_fields(v: dict[str, Any], one_byte_at_a_time: bool) -> None:
    wire = bytes.fromhex(v["wire"])
    trailing = bytes.fromhex(VECTORS["valid"][0]["wire"])[:-1]  # a next frame, cut short
    (event,) = events_of(wire + trailing, one_byte_at_a_time=one_byte_at_a_time)
    assert not isinstance(event, BadFrame)
    assert (event.boot_id, event.counter) == (v["boot_id"], v["counter"])  # type: ignore[union-attr]
    if v["describe"] is not None:
        assert isinstance(event, Describe)
        d, c = v["describe"], event.channel
        assert (event.count, event.id) == (d["count"], d["id"])
        assert (c.name, c.unit, c.device_class, c.exponent) == (
            d["name"],
            d["unit"],
            d["device_class"],
            d["exponent"],
        )
        assert c.kind == d["kind"]
    elif v["readings"] is not None:
        assert isinstance(event, Readings)
        assert [[r.channel, r.status, r.raw] for r in event.values] == v["readings"]
    elif v["request"] is not None:
        assert isinstance(event, Request) and event.what == v["request"]
    else:
        assert isinstance(event, UnknownFrame)
        assert (event.type, event.payload.hex()) == (v["type"], v["payload"])


@pytest.mark.parametrize("v", VECTORS["invalid"], ids=lambda v: v["name"])
@pytest.mark.parametrize("one_byte_at_a_time", [False, True])
def test_decoder_refuses_the_invalid_chunk_for_its_reason(
    v: dict[str, Any], one_byte_at_a_time: bool
) -> None:
    events = events_of(bytes.fromhex(v["wire"]), one_byte_at_a_time=one_byte_at_a_time)
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [(BadFrame, v["reason"])]


def test_all_vectors_in_one_stream_with_noise() -> None:
    stream = b"".join(b"\x41\xfe\x13" + bytes.fromhex(v["wire"]) for v in VECTORS["valid"])
    events = [e for e in events_of(stream) if not isinstance(e, BadFrame)]
    frames = [e for e in events if isinstance(e, Describe | Readings | Request | UnknownFrame)]
    assert [(e.boot_id, e.counter) for e in frames] == [
        (v["boot_id"], v["counter"]) for v in VECTORS["valid"]
    ]


def test_protocol_document_shows_the_worked_examples() -> None:
    text = PROTOCOL.read_text("utf-8")
    flat = "".join(text.split()).lower()
    for name in ("describe-temperature", "readings-climate"):
        (v,) = [v for v in VECTORS["valid"] if v["name"] == name]
        assert v["wire"] in flat, f"PROTOCOL.md lacks the bytes of vector {name!r}"
