"""Writes tests/vectors/ble.json: the BLE GATT service's test vectors.

Run from the repository root: ``python -m tests.vectors.make_ble_vectors``.
The UUIDs, the advertising data and scan response of one node, its info
value, every link segment once, and values a link refuses.
``plugins/lichen_ble/tests/test_vectors.py`` checks the code still produces
exactly these bytes and that docs/ble.md shows them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lichen_ble.segments import Ack, Close, CloseCode, Data, Fin, Mode, Nak, Open, Probe, Segment
from lichen_ble.service import (
    INFO_UUID,
    RX_UUID,
    SCAN_RESPONSE,
    SERVICE_UUID,
    TX_UUID,
    Advert,
    Info,
    advertising_data,
)

from agent.identity import Identity

OUT = Path(__file__).with_name("ble.json")

#: the node of seed 01…01 (8a88e3dd…), heads digest 0011223344556677
KEY = Identity(bytes([1]) * 32).node_id.key
DIGEST = bytes.fromhex("0011223344556677")


def build() -> dict[str, Any]:
    advert = Advert(node_hint=KEY[:5], digest=DIGEST[:4], room=3, dials=True)
    segments: list[tuple[str, str, Segment]] = [
        ("OPEN", "version 1, max_value 512, window 16384", Open(1, 512, 16384)),
        (
            "OPEN",
            "version 2, max_value 512, mode 1 (mule), window 16384",
            Open(2, 512, 16384, Mode.MULE),
        ),
        ("DATA", "seq 0, payload 'hello'", Data(0, b"hello")),
        ("FIN", "seq 1", Fin(1)),
        ("ACK", "next 2, window 16379", Ack(2, 16379)),
        ("NAK", "next 1, window 16384", Nak(1, 16384)),
        ("PROBE", "", Probe()),
        ("CLOSE", "code 2 (timeout), reason 'no ack'", Close(CloseCode.TIMEOUT, "no ack")),
    ]
    return {
        "uuids": {
            "service": str(SERVICE_UUID),
            "rx": str(RX_UUID),
            "tx": str(TX_UUID),
            "info": str(INFO_UUID),
        },
        "node": KEY.hex(),
        "digest": DIGEST.hex(),
        "advert": {
            "fields": "version 1, dials, room 3, hint 8a88e3dd74, digest 00112233",
            "service_data": advert.encode().hex(),
            "advertising_data": advertising_data(advert).hex(),
            "scan_response": SCAN_RESPONSE.hex(),
        },
        "info": {
            "fields": "version 1, node 8a88e3dd…, digest 0011223344556677, room 3",
            "value": Info(node=KEY, digest=DIGEST, room=3).encode().hex(),
        },
        "segments": [
            {"name": name, "fields": fields, "value": segment.encode().hex()}
            for name, fields, segment in segments
        ],
        "invalid": [
            {"name": "empty value", "value": "", "error": "empty GATT value"},
            {"name": "unknown type 0x08", "value": "08", "error": "unknown link segment type"},
            {"name": "DATA without payload", "value": "020000", "error": "DATA segment of 3"},
            {"name": "ACK cut short", "value": "040002", "error": "ACK segment of 3"},
        ],
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2) + "\n", "utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
