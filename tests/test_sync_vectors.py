"""The published sync test vectors: the code must reproduce them byte for byte,
and docs/protocol.md must show the same frames and the state tables as the code has them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.errors import RemoteProtocolError
from agent.sync import FrameReader, decode_message, encode_message, frame_message
from agent.sync.state import render_tables

from .vectors.make_sync_vectors import build

ROOT = Path(__file__).resolve().parents[1]
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "tests" / "vectors" / "sync_messages.json").read_text("utf-8")
)
DOC = (ROOT / "docs" / "protocol.md").read_text("utf-8")


def doc_section(title: str) -> str:
    """The text of the ``## title`` section of docs/protocol.md."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"docs/protocol.md has no section {title!r}"
    return match.group(1)


def doc_hex_blocks() -> list[str]:
    """Every fenced code block of the test-vector section that holds only hex."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", doc_section("Test vectors"), re.S | re.M)
    return [b.strip() for b in blocks if re.fullmatch(r"[0-9a-f]+", b.strip())]


def test_vector_file_is_what_the_code_produces() -> None:
    assert build() == VECTORS


@pytest.mark.parametrize("v", VECTORS["messages"], ids=lambda v: v["name"])
def test_message_vector_decodes_and_reencodes(v: dict[str, Any]) -> None:
    reader = FrameReader(VECTORS["max_frame"])
    reader.feed(bytes.fromhex(v["frame"]))
    body = reader.next_frame()
    assert body is not None and reader.buffered == 0
    message = decode_message(body)
    assert (v["name"], v["type"]) == (message.NAME, message.TYPE)
    assert encode_message(message) == body
    assert frame_message(message).hex() == v["frame"]


@pytest.mark.parametrize("v", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_is_refused_with_its_error(v: dict[str, Any]) -> None:
    reader = FrameReader(VECTORS["max_frame"])
    reader.feed(bytes.fromhex(v["frame"]))
    with pytest.raises(RemoteProtocolError, match=re.escape(v["error"])):
        body = reader.next_frame()
        assert body is not None
        decode_message(body, max_entry_size=VECTORS["max_entry_size"])


def test_protocol_document_shows_exactly_the_vector_frames() -> None:
    expected = [v["frame"] for v in VECTORS["messages"] + VECTORS["invalid"]]
    assert doc_hex_blocks() == expected, (
        "the hex frames in docs/protocol.md differ from tests/vectors/sync_messages.json"
    )


def test_protocol_document_shows_the_state_tables() -> None:
    assert render_tables() in doc_section("State tables")


def test_protocol_document_has_a_channel_section() -> None:
    assert "channel.md" in doc_section("Channel")
