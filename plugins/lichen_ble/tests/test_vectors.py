"""The published BLE vectors: the code reproduces them, docs/ble.md shows them."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.errors import RemoteProtocolError
from lichen_ble.segments import decode
from lichen_ble.service import (
    INFO_UUID,
    LEGACY_ADV_MAX,
    RX_UUID,
    SERVICE_UUID,
    TX_UUID,
    Advert,
    Info,
    parse_advertising_data,
)
from tests.vectors.make_ble_vectors import build

ROOT = Path(__file__).resolve().parents[3]
VECTORS: dict[str, Any] = json.loads((ROOT / "tests/vectors/ble.json").read_text("utf-8"))
DOC = (ROOT / "docs" / "ble.md").read_text("utf-8")


def test_vector_file_is_what_the_code_produces() -> None:
    assert build() == VECTORS


def test_uuids_are_the_published_ones() -> None:
    uuids = VECTORS["uuids"]
    assert [uuid.UUID(uuids[k]) for k in ("service", "rx", "tx", "info")] == [
        SERVICE_UUID, RX_UUID, TX_UUID, INFO_UUID,
    ]  # fmt: skip
    for text in uuids.values():
        assert f"`{text}`" in DOC


def test_the_advertisement_fits_a_legacy_pdu_and_parses_back() -> None:
    advert = VECTORS["advert"]
    data = bytes.fromhex(advert["advertising_data"])
    assert len(data) == LEGACY_ADV_MAX
    parsed = parse_advertising_data(data)
    assert parsed == Advert.decode(bytes.fromhex(advert["service_data"]))
    assert parsed is not None and parsed.node_hint == bytes.fromhex(VECTORS["node"])[:5]
    assert (parsed.room, parsed.dials, parsed.version) == (3, True, 1)
    assert parse_advertising_data(bytes.fromhex(advert["scan_response"])) is None


def test_the_info_value_parses_back() -> None:
    info = Info.decode(bytes.fromhex(VECTORS["info"]["value"]))
    assert info.node.hex() == VECTORS["node"] and info.digest.hex() == VECTORS["digest"]
    longer = bytes.fromhex(VECTORS["info"]["value"]) + b"future"
    assert Info.decode(longer) == info


@pytest.mark.parametrize("v", VECTORS["segments"], ids=lambda v: v["name"])
def test_segment_vector_decodes_and_reencodes(v: dict[str, Any]) -> None:
    segment = decode(bytes.fromhex(v["value"]))
    assert type(segment).__name__.upper() == v["name"]
    assert segment.encode().hex() == v["value"]


@pytest.mark.parametrize("v", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_segment_is_refused(v: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError, match=re.escape(v["error"])):
        decode(bytes.fromhex(v["value"]))


def test_the_document_shows_exactly_the_vectors_in_order() -> None:
    section = DOC.split("## Test vectors", 1)[1]
    blocks = [b.strip() for b in re.findall(r"^```\n(.*?)^```", section, re.S | re.M)]
    advert = VECTORS["advert"]
    expected = [advert["advertising_data"], advert["scan_response"], VECTORS["info"]["value"]]
    expected += [v["value"] for v in VECTORS["segments"]]
    assert blocks == expected
    for v in VECTORS["invalid"][1:]:
        assert f"`{v['value']}`" in section or v["value"][:2] in section
