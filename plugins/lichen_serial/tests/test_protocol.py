"""The pure layers: COBS, CRC, frame header, payloads, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lichen_serial.errors import EncodeError, FrameError
from lichen_serial.framing import (
    MAX_BODY,
    MAX_PAYLOAD,
    Frame,
    FrameType,
    build_frame,
    cobs_decode,
    cobs_encode,
    crc32,
    parse_frame,
)
from lichen_serial.payloads import (
    Channel,
    Described,
    Kind,
    RawValue,
    Status,
    encode_describe,
    encode_readings,
    parse_describe,
    parse_readings,
    parse_request,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
MODULES = ["device", "errors", "frames", "framing", "link", "payloads", "sensor"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(f"lichen_serial.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_crc_is_zlibs_crc32_with_the_standard_check_value() -> None:
    assert crc32(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        (b"", "01"),
        (b"\x00", "01 01"),
        (b"\x00\x00", "01 01 01"),
        (b"\x11\x22\x00\x33", "03 11 22 02 33"),
        (b"\x11\x00", "02 11 01"),
        (bytes(range(1, 255)), "ff " + bytes(range(1, 255)).hex(" ")),
        (bytes(range(1, 255)) + b"\x00", "ff " + bytes(range(1, 255)).hex(" ") + " 01 01"),
    ],
)
def test_cobs_known_encodings(data: bytes, encoded: str) -> None:
    assert cobs_encode(data) == bytes.fromhex(encoded)
    assert cobs_decode(bytes.fromhex(encoded)) == data


@given(st.binary(max_size=700))
def test_cobs_round_trips_without_zeros(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + 1 + len(data) // 254
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("chunk", ["05 11 22", "02 11 05", "03 11 00", "00"])
def test_cobs_refuses_codes_past_the_end_and_zeros(chunk: str) -> None:
    with pytest.raises(FrameError) as caught:
        cobs_decode(bytes.fromhex(chunk))
    assert caught.value.reason == "cobs"


@given(
    st.integers(0, 15),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=MAX_PAYLOAD),
)
def test_build_and_parse_are_inverse(kind: int, boot: int, counter: int, payload: bytes) -> None:
    wire = build_frame(kind, boot_id=boot, counter=counter, payload=payload)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert parse_frame(wire[1:-1]) == Frame(kind, boot, counter, payload)


@given(st.binary(max_size=300))
def test_parse_frame_raises_only_frame_error(chunk: bytes) -> None:
    try:
        frame = parse_frame(chunk)
    except FrameError as exc:
        assert exc.reason in {"cobs", "short", "oversize", "crc", "version"}
    else:  # random bytes that happen to be a frame: then the CRC did match
        body = cobs_decode(chunk)
        assert zlib.crc32(body[:-4]) == int.from_bytes(body[-4:], "little")
        assert frame.payload == body[5:-4]


def test_build_frame_refuses_what_does_not_fit() -> None:
    with pytest.raises(EncodeError):
        build_frame(16, boot_id=0, counter=0, payload=b"")
    with pytest.raises(EncodeError):
        build_frame(2, boot_id=0x10000, counter=0, payload=b"")
    with pytest.raises(EncodeError):
        build_frame(2, boot_id=0, counter=0, payload=bytes(MAX_PAYLOAD + 1))
    longest = build_frame(2, boot_id=0, counter=0, payload=bytes(MAX_PAYLOAD))
    assert len(longest) == MAX_BODY + 3


channels = st.builds(
    Channel,
    name=st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
    unit=st.text(
        st.characters(min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=["Cs"]),
        max_size=16,
    ).filter(lambda unit: len(unit.encode()) <= 16),
    device_class=st.from_regex(r"[a-z0-9_]{0,24}", fullmatch=True),
    exponent=st.integers(-12, 12),
)


@given(channels, st.integers(1, 64), st.data())
def test_describe_round_trips(channel: Channel, count: int, data: st.DataObject) -> None:
    channel_id = data.draw(st.integers(0, count - 1))
    payload = encode_describe(count, channel_id, channel)
    assert parse_describe(payload) == Described(count, channel_id, channel)


@given(
    st.dictionaries(
        st.integers(0, 63), st.tuples(INT64, st.sampled_from(Status)), min_size=1, max_size=64
    )
)
def test_readings_round_trip(items: dict[int, tuple[int, Status]]) -> None:
    values = [RawValue(channel, raw, status) for channel, (raw, status) in items.items()]
    assert parse_readings(encode_readings(values)) == tuple(values)


@given(st.binary(max_size=80))
def test_payload_parsers_raise_only_frame_error(payload: bytes) -> None:
    for parse in (parse_describe, parse_readings, parse_request):
        try:
            parse(payload)
        except FrameError as exc:
            assert exc.reason == "payload"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Temp"}, "channel name"),
        ({"name": "a" * 33}, "channel name"),
        ({"name": "t", "unit": "x" * 17}, "unit"),
        ({"name": "t", "unit": "\n"}, "unit"),
        ({"name": "t", "device_class": "Door"}, "device class"),
        ({"name": "t", "exponent": -13}, "exponent"),
        ({"name": "t", "kind": Kind.BOOLEAN, "exponent": 1}, "boolean"),
    ],
)
def test_channel_refuses_what_the_wire_cannot_carry(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(EncodeError, match=message):
        Channel(**kwargs)  # type: ignore[arg-type]


def test_encoders_refuse_bad_ids_values_and_duplicates() -> None:
    channel = Channel("t")
    for count, channel_id in [(0, 0), (65, 0), (3, 3)]:
        with pytest.raises(EncodeError):
            encode_describe(count, channel_id, channel)
    for values in ([], [RawValue(64, 1)], [RawValue(1, 1), RawValue(1, 2)], [RawValue(0, 2**63)]):
        with pytest.raises(EncodeError):
            encode_readings(values)


def test_channel_values_scale_by_resolution() -> None:
    assert Channel("t", exponent=-2).value(2137) == 21.37
    assert Channel("t", exponent=3).value(-5) == -5000
    assert Channel("t").value(7) == 7
    assert Channel("b", kind=Kind.BOOLEAN).value(5) is True
    assert Channel("b", kind=Kind.BOOLEAN).value(0) is False
    spec = Channel("p", unit="hPa", device_class="pressure", exponent=-1).field_spec()
    assert (spec.unit, spec.resolution, spec.device_class) == ("hPa", 0.1, "pressure")
    assert Channel("b", kind=Kind.BOOLEAN).field_spec().resolution is None


def test_frame_types_are_the_documented_nibbles() -> None:
    assert [FrameType.DESCRIBE, FrameType.READINGS, FrameType.REQUEST] == [1, 2, 3]
