"""Writes tests/vectors/uplink.json: board ↔ cloud wire test vectors.

Run from the repository root: ``python -m tests.vectors.make_uplink_vectors``.
A batch holding entry vector 1 of ``entries.json``; the acknowledgement a
cloud (seed ``09…09``) signs for that feed; a drop record entry; and payloads
every implementation must refuse. ``tests/test_uplink_wire.py`` checks the
code still produces exactly these bytes and that docs/uplink.md shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.clock import pack
from agent.entry import sign_entry
from agent.identity import Identity, NodeId
from agent.uplink.wire import (
    ACKS_COLLECTION,
    DROPS_COLLECTION,
    DropRecord,
    Topics,
    ack_body,
    drop_body,
    encode_entry_batch,
)

OUT = Path(__file__).with_name("uplink.json")
ENTRIES = Path(__file__).with_name("entries.json")
CLOUD = Identity(bytes([9]) * 32)
TS = pack(1_790_000_000_000)


def build() -> dict[str, object]:
    vector = json.loads(ENTRIES.read_text())["valid"][0]
    raw = bytes.fromhex(vector["entry"])
    board = NodeId.parse(vector["node_id"])
    ack = sign_entry(
        CLOUD, seq=1, prev=None, ts=TS, collection=ACKS_COLLECTION,
        body=ack_body(vector["seq"]), doc_id=str(board),
    )  # fmt: skip
    board_identity = Identity(bytes.fromhex(vector["seed"]))
    drop = sign_entry(
        board_identity, seq=vector["seq"] + 1, prev=bytes.fromhex(vector["hash"]),
        ts=vector["ts"] + 1, collection=DROPS_COLLECTION,
        body=drop_body(DropRecord("disk quota", {str(board): [(1, 3)]}, 3, 600, {"readings/x": 3})),
    )  # fmt: skip
    topics = Topics("default", str(board))
    return {
        "about": "Lichen board ↔ cloud wire vectors (docs/uplink.md). Hex strings are bytes.",
        "topics": {
            "up": topics.up,
            "ack": topics.ack,
            "status": topics.status,
            "cloud_filter": Topics.up_filter(share_group="ingest"),
        },
        "batch": {"entries": [raw.hex()], "payload": encode_entry_batch([raw]).hex()},
        "ack": {
            "cloud_seed": CLOUD.seed.hex(),
            "cloud_node_id": str(CLOUD.node_id),
            "entry": ack.raw.hex(),
            "payload": encode_entry_batch([ack.raw]).hex(),
        },
        "drop": {
            "entry": drop.raw.hex(),
            "body": drop_body(
                DropRecord("disk quota", {str(board): [(1, 3)]}, 3, 600, {"readings/x": 3})
            ),
        },
        "invalid": [
            {"name": "not CBOR", "payload": "ff00"},
            {
                "name": "wrong version",
                "payload": encode_entry_batch([]).hex().replace("82018", "82028", 1),
            },
            {"name": "entries not byte strings", "payload": "820181" + "63616263"},
            {"name": "not an array", "payload": "a0"},
        ],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
