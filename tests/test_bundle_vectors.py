"""The published bundle test vectors: the code must reproduce them byte for byte,
read them back to the entry vectors, and docs/format.md must show the same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nacl.public import SealedBox
from nacl.signing import SigningKey

from agent.bundle import BundleEnd, BundleError, BundleReader, BundleStart, Chunk
from agent.bundle.format import MAX_CHUNK, decode_header
from agent.bundle.seal import Opener
from agent.identity import Identity
from agent.sansio import NEED_DATA

from .vectors.make_bundle_vectors import build

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bundle.json").read_text("utf-8"))
ROOT = Path(__file__).resolve().parents[1]


def read_all(data: bytes, opener: Opener | None, step: int = 7) -> list[Any]:
    """Feed the reader a few bytes at a time: it must not care where reads split."""
    reader = BundleReader(opener=opener, max_entry_size=MAX_CHUNK)
    events: list[Any] = []
    for at in range(0, len(data) + 1, step):
        reader.receive_data(data[at : at + step])
        while (event := reader.next_event()) is not NEED_DATA:
            events.append(event)
    reader.receive_data(b"")
    while (event := reader.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def test_vector_file_is_what_the_code_produces() -> None:
    assert build() == VECTORS


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vector_reads_back_to_the_entry_vectors(v: dict[str, Any]) -> None:
    cloud = Identity(bytes.fromhex(VECTORS["cloud_seed"]))
    events = read_all(bytes.fromhex(v["bundle"]), Opener(cloud) if v["sealed_to"] else None)
    assert isinstance(events[0], BundleStart) and isinstance(events[-1], BundleEnd)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) == v["chunks"]
    assert [e.raw.hex() for c in chunks for e in c.entries] == VECTORS["entries"]
    manifest = events[-1].manifest
    assert manifest.content_hash.hex() == v["content_hash"]
    assert manifest.content().hex() == v["manifest_content"]
    assert manifest.exporter == Identity(bytes.fromhex(VECTORS["exporter_seed"])).node_id.key


def test_the_sealed_vector_opens_with_libsodium_and_the_cloud_key_only() -> None:
    v = VECTORS["valid"][1]
    header = decode_header(bytes.fromhex(v["header"])[5:])
    private = SigningKey(bytes.fromhex(VECTORS["cloud_seed"])).to_curve25519_private_key()
    assert header.sealed_key is not None
    assert SealedBox(private).decrypt(header.sealed_key).hex() == v["content_key"]
    for raw in map(bytes.fromhex, VECTORS["entries"]):  # no entry's signature or body shows
        assert raw[-64:] not in bytes.fromhex(v["bundle"])
        assert raw[-100:-70] not in bytes.fromhex(v["bundle"])
    with pytest.raises(BundleError, match="sealed to"):
        read_all(bytes.fromhex(v["bundle"]), None)
    with pytest.raises(BundleError, match="not to this node"):
        read_all(bytes.fromhex(v["bundle"]), Opener(Identity.generate()))


@pytest.mark.parametrize("v", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_is_refused_with_its_reason(v: dict[str, Any]) -> None:
    cloud = Identity(bytes.fromhex(VECTORS["cloud_seed"]))
    with pytest.raises(BundleError, match=v["error"]):
        read_all(bytes.fromhex(v["bundle"]), Opener(cloud))


def test_format_document_shows_the_vectors() -> None:
    text = (ROOT / "docs" / "format.md").read_text("utf-8").replace("\n", "")
    plain = VECTORS["valid"][0]
    assert plain["bundle"] in text, "docs/format.md lacks the bytes of the plain bundle vector"
    for v in VECTORS["valid"]:
        assert v["content_hash"] in text


@pytest.mark.parametrize("v", VECTORS["valid"], ids=lambda v: v["name"])
@pytest.mark.slow
def test_every_cut_and_every_flipped_byte_is_refused(v: dict[str, Any]) -> None:
    """Wherever the vector is cut, and whichever single byte is changed, the reader
    refuses it with a BundleError (never another exception, never a bundle)."""
    opener = Opener(Identity(bytes.fromhex(VECTORS["cloud_seed"])))
    data = bytes.fromhex(v["bundle"])
    for cut in range(len(data)):
        with pytest.raises(BundleError):
            read_all(data[:cut], opener, step=len(data))
    for at in range(len(data)):
        for bit in (0x01, 0x80):
            bad = data[:at] + bytes([data[at] ^ bit]) + data[at + 1 :]
            with pytest.raises(BundleError):
                read_all(bad, opener, step=len(data))
