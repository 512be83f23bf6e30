"""The published entry test vectors: the code must reproduce them byte for byte,
and docs/format.md must show the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import encoding, errors
from agent.entry import SIGNING_DOMAIN, decode_entry, entry_hash, verify_entry
from agent.identity import Identity

from .vectors.make_entry_vectors import build

VECTORS = json.loads((Path(__file__).parent / "vectors" / "entries.json").read_text("utf-8"))
ROOT = Path(__file__).resolve().parents[1]


def test_vector_file_is_what_the_code_produces() -> None:
    assert build() == VECTORS


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vector_decodes_to_its_fields(v: dict) -> None:  # type: ignore[type-arg]
    raw = bytes.fromhex(v["entry"])
    entry = decode_entry(raw)
    verify_entry(entry)
    assert str(Identity(bytes.fromhex(v["seed"])).node_id) == v["node_id"]
    assert entry.author.hex() == v["author"]
    assert entry.seq == v["seq"] and entry.ts == v["ts"]
    assert (entry.prev.hex() if entry.prev else None) == v["prev"]
    assert entry.collection == v["collection"] and entry.doc_id == v["doc"]
    assert [b.hex() for b in entry.base] == v["base"]
    assert encoding.dumps(entry.body).hex() == v["body"]
    assert entry.content.hex() == v["content"]
    assert entry.signature.hex() == v["signature"]
    assert entry_hash(raw).hex() == v["hash"]
    assert VECTORS["signing_domain"] == SIGNING_DOMAIN.hex()


@pytest.mark.parametrize("v", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_is_refused_with_its_error(v: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(getattr(errors, v["error"])):
        verify_entry(decode_entry(bytes.fromhex(v["entry"])))


def test_format_document_shows_the_vectors() -> None:
    text = (ROOT / "docs" / "format.md").read_text("utf-8").replace("\n", "")
    for v in VECTORS["valid"]:
        assert v["entry"] in text, f"docs/format.md lacks the bytes of vector {v['name']!r}"
        assert v["hash"] in text
