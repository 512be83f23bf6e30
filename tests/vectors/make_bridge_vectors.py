"""Writes tests/vectors/bridge_frames.json and .txt: serial bridge frame vectors.

Run from the repository root: ``python -m tests.vectors.make_bridge_vectors``.
Both files come from :func:`build`: the JSON for Python
(``plugins/lichen_serial/tests/test_vectors.py``), the line-oriented text for
C (``firmware-bridge/tests/test_vectors.c``). Both sides must encode the
valid frames to exactly these bytes, decode them back to these fields, and
refuse each invalid chunk for its stated reason — so they cannot drift.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from lichen_serial.framing import FrameType, build_frame, cobs_encode
from lichen_serial.payloads import Channel, FrameEncoder, Kind, RawValue, Status, encode_readings

HERE = Path(__file__).parent
JSON_OUT = HERE / "bridge_frames.json"
TEXT_OUT = HERE / "bridge_frames.txt"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

CLIMATE = [
    Channel("temperature", unit="°C", device_class="temperature", exponent=-2),
    Channel("humidity", unit="%", device_class="humidity", exponent=-1),
    Channel("open", device_class="door", kind=Kind.BOOLEAN),
]
LONGEST = Channel(
    "a" * 31 + "9", unit="µmol/m²/s·x", device_class="z" * 24, exponent=-12
)  # every text at its limit (the unit: 16 bytes of UTF-8)


def _valid(name: str, wire: bytes, frame_type: int, boot_id: int, counter: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": frame_type,
        "boot_id": boot_id,
        "counter": counter,
        "describe": None,
        "readings": None,
        "request": None,
        "payload": None,
        "wire": wire.hex(),
    }


def _describe(
    name: str, boot_id: int, counter: int, channels: list[Channel], i: int
) -> dict[str, Any]:
    wire = FrameEncoder(boot_id, counter).describe(channels, i)
    vector = _valid(name, wire, FrameType.DESCRIBE, boot_id, counter)
    c = channels[i]
    vector["describe"] = {
        "count": len(channels),
        "id": i,
        "kind": int(c.kind),
        "exponent": c.exponent,
        "name": c.name,
        "unit": c.unit,
        "device_class": c.device_class,
    }
    return vector


def _readings(name: str, boot_id: int, counter: int, values: list[RawValue]) -> dict[str, Any]:
    wire = FrameEncoder(boot_id, counter).readings(values)
    vector = _valid(name, wire, FrameType.READINGS, boot_id, counter)
    vector["readings"] = [[v.channel, int(v.status), v.raw] for v in values]
    return vector


def _chunk(body_without_crc: bytes, *, crc: int | None = None) -> bytes:
    """A delimited chunk for ``body``, with its CRC (or the given wrong one)."""
    value = zlib.crc32(body_without_crc) if crc is None else crc
    return b"\x00" + cobs_encode(body_without_crc + struct.pack("<I", value)) + b"\x00"


def _bad(name: str, reason: str, wire: bytes) -> dict[str, Any]:
    return {"name": name, "reason": reason, "wire": wire.hex()}


def _bad_payload(name: str, frame_type: int, payload: bytes) -> dict[str, Any]:
    return _bad(name, "payload", build_frame(frame_type, boot_id=7, counter=9, payload=payload))


def build() -> dict[str, Any]:
    climate = [
        _describe("describe-temperature", 0x1234, 0, CLIMATE, 0),
        _describe("describe-humidity", 0x1234, 1, CLIMATE, 1),
        _describe("describe-door-boolean", 0x1234, 2, CLIMATE, 2),
        _readings(
            "readings-climate", 0x1234, 3, [RawValue(0, 2137), RawValue(1, 543), RawValue(2, 1)]
        ),
        _readings(
            "readings-clipped-and-fault",
            0x1234,
            4,
            [RawValue(0, -4000, Status.CLIPPED), RawValue(1, 0, Status.FAULT)],
        ),
    ]
    edges = [
        _readings(
            "readings-varint-edges",
            0xFFFF,
            0xFFFF,
            [RawValue(63, INT64_MAX), RawValue(0, INT64_MIN), RawValue(5, 0)]
            + [RawValue(6 + i, v) for i, v in enumerate([-1, 63, -64, 64, 8191, -8192, 8192])],
        ),
        _describe("describe-longest-texts", 0x0000, 0x0100, [LONGEST] * 64, 63),
        _readings(
            "readings-full-frame",
            0x00FF,
            0xFF00,
            [RawValue(i, INT64_MIN if i % 2 else INT64_MAX) for i in range(21)]
            + [RawValue(21 + i, 0) for i in range(5)],
        ),
    ]
    request = _valid("request-describe", FrameEncoder(0, 0).request(), FrameType.REQUEST, 0, 0)
    request["request"] = 1
    unknown = _valid(
        "reserved-type-7", FrameEncoder(0xBEEF, 42).frame(7, b"\x01\x00\x03"), 7, 0xBEEF, 42
    )
    unknown["payload"] = "010003"
    valid = [*climate, *edges, request, unknown]

    content = struct.pack("<BHH", 0x12, 0x1234, 3) + encode_readings([RawValue(0, 2137)])
    flipped = bytearray(content)
    flipped[6] ^= 0x01  # one bit of the value
    invalid = [
        _bad("crc-one-bit-wrong", "crc", _chunk(content, crc=zlib.crc32(content) ^ 0x00010000)),
        _bad("crc-payload-bit-flipped", "crc", _chunk(bytes(flipped), crc=zlib.crc32(content))),
        _bad("cobs-code-past-end", "cobs", b"\x00\x05\x12\x34\x00"),
        _bad("cobs-code-past-end-after-zero", "cobs", b"\x00\x02\x12\x09\x01\x00"),
        _bad(
            "short-eight-bytes",
            "short",
            b"\x00" + cobs_encode(b"\x12\x34\x12\x00\x00\x01\x02\x03") + b"\x00",
        ),
        _bad("short-one-byte-of-noise", "short", b"\x00\x01\x00"),
        _bad("oversize-252-bytes", "oversize", b"\x00" + b"\x41" * 252 + b"\x00"),
        _bad("version-2", "version", _chunk(struct.pack("<BHH", 0x22, 7, 9) + b"\x00\x02")),
        _bad("version-0", "version", _chunk(struct.pack("<BHH", 0x02, 7, 9) + b"\x00\x02")),
        _bad_payload("readings-empty", FrameType.READINGS, b""),
        _bad_payload("readings-reserved-status-3", FrameType.READINGS, b"\xc0\x02"),
        _bad_payload("readings-channel-twice", FrameType.READINGS, b"\x05\x02\x05\x04"),
        _bad_payload("readings-overlong-varint", FrameType.READINGS, b"\x00\x80\x00"),
        _bad_payload(
            "readings-varint-beyond-64-bits", FrameType.READINGS, b"\x00" + b"\xff" * 9 + b"\x02"
        ),
        _bad_payload(
            "readings-varint-eleven-bytes", FrameType.READINGS, b"\x00" + b"\x80" * 10 + b"\x01"
        ),
        _bad_payload("readings-varint-unterminated", FrameType.READINGS, b"\x00\x02\x01\x80"),
        _bad_payload(
            "describe-name-uppercase", FrameType.DESCRIBE, b"\x01\x00\x00\x00\x01T\x00\x00"
        ),
        _bad_payload("describe-name-empty", FrameType.DESCRIBE, b"\x01\x00\x00\x00\x00\x00\x00"),
        _bad_payload(
            "describe-id-not-below-count", FrameType.DESCRIBE, b"\x02\x02\x00\x00\x01t\x00\x00"
        ),
        _bad_payload("describe-count-65", FrameType.DESCRIBE, b"\x41\x00\x00\x00\x01t\x00\x00"),
        _bad_payload("describe-kind-2", FrameType.DESCRIBE, b"\x01\x00\x02\x00\x01t\x00\x00"),
        _bad_payload("describe-exponent-13", FrameType.DESCRIBE, b"\x01\x00\x00\x0d\x01t\x00\x00"),
        _bad_payload(
            "describe-boolean-with-exponent", FrameType.DESCRIBE, b"\x01\x00\x01\xff\x01t\x00\x00"
        ),
        _bad_payload(
            "describe-trailing-byte", FrameType.DESCRIBE, b"\x01\x00\x00\x00\x01t\x00\x00\x00"
        ),
        _bad_payload(
            "describe-text-past-end", FrameType.DESCRIBE, b"\x01\x00\x00\x00\x01t\x00\x05ab"
        ),
        _bad_payload(
            "describe-unit-overlong-utf8",
            FrameType.DESCRIBE,
            b"\x01\x00\x00\x00\x01t\x02\xc0\xb0\x00",
        ),
        _bad_payload(
            "describe-unit-control-char", FrameType.DESCRIBE, b"\x01\x00\x00\x00\x01t\x01\x09\x00"
        ),
        _bad_payload("describe-class-dash", FrameType.DESCRIBE, b"\x01\x00\x00\x00\x01t\x00\x01-"),
        _bad_payload("request-two-bytes", FrameType.REQUEST, b"\x01\x01"),
    ]
    return {
        "about": "Lichen serial bridge frames, protocol version 1 (firmware-bridge/PROTOCOL.md). "
        "'wire' is the frame with both 00 delimiters. Valid frames: encoders must produce "
        "exactly 'wire' from the fields; decoders must read the fields back. Invalid chunks: "
        "decoders must refuse each for 'reason' and yield nothing from it.",
        "valid": valid,
        "invalid": invalid,
    }


def _text_token(text: str) -> str:
    if not text:
        return "-"
    assert text != "-" and not any(c.isspace() for c in text), text
    return text


def render_text(vectors: dict[str, Any]) -> str:
    """The line-oriented twin of the JSON, for C (see the header it writes)."""
    lines = [
        "# Lichen serial bridge frame vectors, protocol version 1.",
        "# GENERATED by tests/vectors/make_bridge_vectors.py from the same data as",
        "# bridge_frames.json. Do not edit. One record per block:",
        "#   valid NAME                  a frame encoders must produce byte for byte",
        "#   header TYPE BOOT_ID COUNTER",
        "#   describe COUNT ID KIND EXPONENT NAME UNIT CLASS   ('-' = empty text)",
        "#   reading CHANNEL STATUS VALUE                      (one per value, in order)",
        "#   request WHAT",
        "#   payload HEX                 (a reserved type: the raw payload)",
        "#   wire HEX                    the frame, both 00 delimiters included",
        "#   end",
        "#   invalid NAME REASON         a chunk decoders must refuse for REASON",
        "#   wire HEX",
        "#   end",
        "",
    ]
    for v in vectors["valid"]:
        lines += [f"valid {v['name']}", f"header {v['type']} {v['boot_id']} {v['counter']}"]
        if v["describe"] is not None:
            d = v["describe"]
            texts = " ".join(_text_token(d[k]) for k in ("name", "unit", "device_class"))
            lines.append(f"describe {d['count']} {d['id']} {d['kind']} {d['exponent']} {texts}")
        for channel, status, value in v["readings"] or []:
            lines.append(f"reading {channel} {status} {value}")
        if v["request"] is not None:
            lines.append(f"request {v['request']}")
        if v["payload"] is not None:
            lines.append(f"payload {v['payload']}")
        lines += [f"wire {v['wire']}", "end", ""]
    for v in vectors["invalid"]:
        lines += [f"invalid {v['name']} {v['reason']}", f"wire {v['wire']}", "end", ""]
    return "\n".join(lines)


def render_json(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    data = build()
    JSON_OUT.write_text(render_json(data), "utf-8")
    TEXT_OUT.write_text(render_text(data), "utf-8")
    print(f"wrote {JSON_OUT} and {TEXT_OUT}")
