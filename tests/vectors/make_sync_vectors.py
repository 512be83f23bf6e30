"""Writes tests/vectors/sync_messages.json: sync protocol test vectors.

Run from the repository root: ``python -m tests.vectors.make_sync_vectors``.
Every message type once, as the complete frame (length prefix + canonical
CBOR), and frames every implementation must refuse. ``tests/test_sync_vectors.py``
checks the code still produces exactly these bytes and that docs/protocol.md
shows them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2

from agent.entry import DEFAULT_MAX_ENTRY_SIZE, decode_entry
from agent.identity import Identity
from agent.sync import (
    PROTOCOL_VERSION,
    Bye,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    Have,
    HaveEnd,
    Hello,
    Live,
    Message,
    Want,
    WantEnd,
    encode_message,
    frame_message,
    max_frame_for,
)
from agent.sync.wire import uvarint

OUT = Path(__file__).with_name("sync_messages.json")
ENTRIES = Path(__file__).with_name("entries.json")


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _diagnostic(value: Any) -> str:
    """CBOR diagnostic notation for the simple values messages hold."""
    if isinstance(value, list):
        return "[" + ", ".join(_diagnostic(v) for v in value) + "]"
    if isinstance(value, bytes):
        return (
            f"h'{value.hex()}'"
            if len(value) <= 32
            else f"h'{value[:8].hex()}…' ({len(value)} bytes)"
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def raw_frame(value: Any) -> bytes:
    """A frame around any canonical CBOR value (for frames the encoder refuses to make)."""
    body = cbor2.dumps(value, canonical=True)
    return uvarint(len(body)) + body


def vector(message: Message, fields: dict[str, Any]) -> dict[str, Any]:
    body = encode_message(message)
    return {
        "name": message.NAME,
        "type": message.TYPE,
        "fields": {k: _json(v) for k, v in fields.items()},
        "diagnostic": _diagnostic(cbor2.loads(body)),
        "frame": frame_message(message).hex(),
    }


def build() -> dict[str, Any]:
    entries = json.loads(ENTRIES.read_text("utf-8"))["valid"]
    first = decode_entry(bytes.fromhex(entries[0]["entry"]))
    alice = Identity(b"\x01" * 32).node_id.key
    bob = Identity(b"\x02" * 32).node_id.key
    head = bytes.fromhex(entries[1]["hash"])
    hello: dict[str, Any] = {"node": alice, "role": "board", "since": 0, "change": 2}
    have: dict[str, Any] = {"author": alice, "from_seq": 1, "to_seq": 2, "head_hash": head}
    have_short: dict[str, Any] = {"author": bob, "from_seq": 1, "to_seq": 1}
    want: dict[str, Any] = {"author": alice, "from_seq": 1, "to_seq": 2}
    messages = [
        vector(Hello(**hello), {"version": PROTOCOL_VERSION, **hello}),
        vector(Have(**have), have),
        vector(Have(**have_short), have_short),
        vector(HaveEnd(change=2), {"change": 2}),
        vector(Want(**want), want),
        vector(WantEnd(), {}),
        vector(EntryData(entry=first), {"entry": first.raw}),
        vector(Credit(entries=1024, bytes=262144), {"entries": 1024, "bytes": 262144}),
        vector(Done(change=2), {"change": 2}),
        vector(Live(), {}),
        vector(Bye(reason="done"), {"reason": "done"}),
        vector(ErrorMessage(reason="ENTRY beyond credit"), {"reason": "ENTRY beyond credit"}),
    ]
    hello_v2 = raw_frame([0, 2, alice, "board", 0, 2])
    max_frame = max_frame_for(DEFAULT_MAX_ENTRY_SIZE)
    invalid = [
        ("HELLO of version 2", hello_v2, "wrong version"),
        ("unknown message type 11", raw_frame([11]), "unknown message type"),
        ("not an array: the integer 4", raw_frame(4), "garbage"),
        ("not canonical: WANT_END's type as 0x1804", bytes.fromhex("03811804"), "garbage"),
        ("frame of length 0", b"\x00", "length 0"),
        ("length prefix not in shortest form (0x8200)", bytes.fromhex("82008104"), "shortest"),
        (
            f"oversized: the prefix announces {max_frame + 1} bytes",
            uvarint(max_frame + 1),
            "oversized",
        ),
        ("HAVE with from_seq 0", raw_frame([1, alice, 0, 2]), "from_seq must be at least 1"),
        ("WANT with from_seq above to_seq", raw_frame([3, alice, 5, 2]), "above to_seq"),
        ("WANT_END with a field", raw_frame([4, 0]), "WANT_END has 1 fields"),
        ("CREDIT with a negative count", raw_frame([6, -1, 10]), "CREDIT entries"),
        (
            "ENTRY holding a truncated entry",
            raw_frame([5, first.raw[:-1]]),
            "not hold a valid entry",
        ),
    ]
    return {
        "about": "Lichen sync protocol v1 test vectors (docs/protocol.md). 'frame' is the "
        "complete frame: LEB128 length, then the message as canonical CBOR. Byte "
        "strings in 'fields' are hex. Keys: Ed25519 public keys of seeds 01…01 and "
        "02…02; the ENTRY carries entry vector 1 of entries.json.",
        "version": PROTOCOL_VERSION,
        "max_entry_size": DEFAULT_MAX_ENTRY_SIZE,
        "max_frame": max_frame,
        "messages": messages,
        "invalid": [
            {"name": name, "frame": frame.hex(), "error": error} for name, frame, error in invalid
        ],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT}")
