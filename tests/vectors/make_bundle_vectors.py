"""Writes tests/vectors/bundle.json: bundle-format test vectors.

Run from the repository root: ``python -m tests.vectors.make_bundle_vectors``.
The entries are the three valid entry vectors (``entries.json``); the bundle id,
the time, the content key and the sealed box's ephemeral key are fixed here
(random in use), and Ed25519 signing is deterministic, so the bytes are exact.
``tests/test_bundle_vectors.py`` checks the code still produces exactly these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.bundle.format import SIGNING_DOMAIN, decode_manifest_frame
from agent.bundle.writer import BundleWriter
from agent.identity import Identity

from .make_entry_vectors import build as entry_vectors

OUT = Path(__file__).with_name("bundle.json")

EXPORTER_SEED = bytes([1]) * 32  # the author of entry vectors 1 and 2
CLOUD_SEED = bytes([3]) * 32
BUNDLE_ID = bytes(range(16))
CREATED_MS = 1_795_000_002_000
CONTENT_KEY = bytes([0x42]) * 32
EPHEMERAL_SECRET = bytes([5]) * 32
CHUNK_TARGET = 200  # small, so the three entries make two chunks


def entries() -> list[bytes]:
    """The valid entry vectors in bundle order: by author key, then seq."""
    valid = entry_vectors()["valid"]
    ordered = sorted(valid, key=lambda v: (bytes.fromhex(v["author"]), v["seq"]))
    return [bytes.fromhex(v["entry"]) for v in ordered]


def make(sealed: bool) -> tuple[bytes, BundleWriter]:
    from agent.entry import decode_entry

    exporter = Identity(EXPORTER_SEED)
    writer = BundleWriter(
        exporter.node_id.key,
        created_ms=CREATED_MS,
        seal_to=Identity(CLOUD_SEED).node_id.key if sealed else None,
        selection={"collections": ["*"]},
        chunk_target=CHUNK_TARGET,
        bundle_id=BUNDLE_ID,
        content_key=CONTENT_KEY if sealed else None,
        ephemeral_secret=EPHEMERAL_SECRET if sealed else None,
    )
    for raw in entries():
        entry = decode_entry(raw)
        writer.add(entry.author, entry.seq, raw)
    writer.finish(exporter.sign)
    return writer.data_to_send(), writer


def vector(name: str, sealed: bool) -> dict[str, Any]:
    data, writer = make(sealed)
    size = int.from_bytes(data[-8:-4], "big")
    manifest_frame = data[-8 - size - 5 : -8]
    content = decode_manifest_frame(manifest_frame[5:])
    return {
        "name": name,
        "sealed_to": str(Identity(CLOUD_SEED).node_id) if sealed else None,
        "content_key": CONTENT_KEY.hex() if sealed else None,
        "ephemeral_secret": EPHEMERAL_SECRET.hex() if sealed else None,
        "header": writer.header.encode().hex(),
        "chunks": content.chunks,
        "content_hash": content.content_hash.hex(),
        "manifest_content": content.content().hex(),
        "bundle": data.hex(),
    }


def build() -> dict[str, Any]:
    plain, writer = make(False)
    truncated = plain[:-1]
    flipped = bytearray(plain)
    first_entry = 8 + len(writer.header.encode()) + 5 + 5 + 3  # magic, header, frame, chunk heads
    flipped[first_entry + 40] ^= 0x01  # inside the first chunk's first entry
    sealed, _ = make(True)
    opened = bytearray(sealed)
    opened[len(sealed) // 3] ^= 0x01  # inside a sealed chunk
    return {
        "about": "Lichen bundle format v1 test vectors (docs/format.md, Bundles). The "
        "exporter is Ed25519 from 'exporter_seed' (entry vectors' first author); the cloud a "
        "sealed bundle is for from 'cloud_seed'. The entries are the valid entry vectors.",
        "signing_domain": SIGNING_DOMAIN.hex(),
        "exporter_seed": EXPORTER_SEED.hex(),
        "cloud_seed": CLOUD_SEED.hex(),
        "bundle_id": BUNDLE_ID.hex(),
        "created_ms": CREATED_MS,
        "entries": [raw.hex() for raw in entries()],
        "valid": [vector("plain", False), vector("sealed to the cloud", True)],
        "invalid": [
            {"name": "one byte short", "bundle": truncated.hex(), "error": "truncated"},
            {"name": "an entry byte flipped", "bundle": bytes(flipped).hex(), "error": "entry"},
            {
                "name": "a sealed chunk byte flipped",
                "bundle": bytes(opened).hex(),
                "error": "does not decrypt",
            },
        ],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT}")
