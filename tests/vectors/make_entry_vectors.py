"""Writes tests/vectors/entries.json: entry-format test vectors.

Run from the repository root: ``python -m tests.vectors.make_entry_vectors``.
Ed25519 signing is deterministic, so the same seeds give the same bytes;
``tests/test_vectors.py`` checks the code still produces exactly these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent import encoding
from agent.clock import pack
from agent.entry import SIGNING_DOMAIN, sign_entry
from agent.identity import Identity
from agent.readings import FieldSpec, Reading, encode_reading_batch

OUT = Path(__file__).with_name("entries.json")


def vector(name: str, seed: bytes, **fields: Any) -> dict[str, Any]:
    ident = Identity(seed)
    entry = sign_entry(ident, **fields)
    return {
        "name": name,
        "seed": seed.hex(),
        "author": ident.node_id.key.hex(),
        "node_id": str(ident.node_id),
        "seq": entry.seq,
        "prev": entry.prev.hex() if entry.prev else None,
        "ts": entry.ts,
        "collection": entry.collection,
        "doc": entry.doc_id,
        "base": [b.hex() for b in entry.base],
        "body": encoding.dumps(entry.body).hex(),
        "content": entry.content.hex(),
        "signature": entry.signature.hex(),
        "entry": entry.raw.hex(),
        "hash": entry.hash.hex(),
    }


def build() -> dict[str, Any]:
    alice, bob = b"\x01" * 32, b"\x02" * 32
    batch = encode_reading_batch(
        [Reading(1_795_000_000_000 + 100 * i, {"temperature": 21.37 + i / 100}) for i in range(3)],
        {"temperature": FieldSpec(unit="°C", resolution=0.01)},
    )
    first = vector(
        "first entry of a feed: a batch of three readings",
        alice,
        seq=1,
        prev=None,
        ts=pack(1_795_000_000_300, 0),
        collection="readings/climate",
        body=batch,
    )
    second = vector(
        "second entry: a document version",
        alice,
        seq=2,
        prev=bytes.fromhex(first["hash"]),
        ts=pack(1_795_000_000_300, 1),
        collection="config",
        body={"interval": 5, "site": "greenhouse"},
        doc_id="site",
    )
    third = vector(
        "a document version replacing another author's version",
        bob,
        seq=1,
        prev=None,
        ts=pack(1_795_000_001_000, 0),
        collection="config",
        body={"interval": 10, "site": "greenhouse"},
        doc_id="site",
        base=[bytes.fromhex(second["hash"])],
    )
    raw = bytes.fromhex(second["entry"])
    flipped = bytearray(raw)
    flipped[-1] ^= 0x01
    # Non-canonical but validly signed: version 1 written as a two-byte integer.
    content = bytes.fromhex(second["content"])
    bad_content = content[:1] + b"\x00\x18\x01" + content[3:]
    header = bytes([0x58, len(bad_content)])
    sig = Identity(alice).sign(SIGNING_DOMAIN + bad_content)
    non_canonical = b"\x82" + header + bad_content + b"\x58\x40" + sig
    invalid = [
        {"name": "truncated by one byte", "entry": raw[:-1].hex(), "error": "MalformedEntry"},
        {"name": "one trailing byte", "entry": (raw + b"\x00").hex(), "error": "MalformedEntry"},
        {"name": "signature bit flipped", "entry": bytes(flipped).hex(), "error": "BadSignature"},
        {
            "name": "content not canonical (version 1 as 0x1801), validly signed",
            "entry": non_canonical.hex(),
            "error": "MalformedEntry",
        },
    ]
    return {
        "about": "Lichen entry format v1 test vectors (docs/format.md). Keys are Ed25519 from "
        "the 32-byte 'seed'. 'entry' is the complete encoded entry; 'hash' its BLAKE2b-256.",
        "signing_domain": SIGNING_DOMAIN.hex(),
        "valid": [first, second, third],
        "invalid": invalid,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT}")
