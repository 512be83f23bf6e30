"""docs/channel.md's worked example: its script runs, prints what the page shows,
and a real SecureChannel puts the same bytes on the wire.

The page cannot drift from the code: change either and this test fails."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from agent.channel import HandshakeComplete, Message, SecureChannel
from agent.channel.binding import PROLOGUE, PROTOCOL_NAME, PSK_PROTOCOL_NAME, SIGNATURE_DOMAIN
from agent.identity import Identity, NodeId, verify_signature
from agent.sansio import NEED_DATA

DOC = Path(__file__).parent.parent / "docs" / "channel.md"
ALICE, BOB = Identity(bytes([0x01]) * 32), Identity(bytes([0x02]) * 32)
E_ALICE, E_BOB, PSK = bytes([0xA1]) * 32, bytes([0xB2]) * 32, bytes(range(32))


def _block(marker: str) -> str:
    """The fenced block right after ``<!-- worked-example:MARKER -->``."""
    match = re.search(
        rf"<!-- worked-example:{marker} -->\n```\w*\n(.*?)^```$",
        DOC.read_text("utf-8"),
        re.S | re.M,
    )
    assert match is not None, f"docs/channel.md has no worked-example:{marker} block"
    return match.group(1)


def _values(output: str) -> dict[str, str]:
    """``name value`` lines; a line starting with spaces continues the value above."""
    values: dict[str, str] = {}
    name = ""
    for line in output.splitlines():
        if line.startswith(" "):
            values[name] += line.strip()
        else:
            name, value = line.split()
            values[name] = value
    return values


OUTPUT = _block("output")
VALUES = _values(OUTPUT)


def test_the_script_prints_the_output_shown() -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_block("script"), "docs/channel.md", "exec"), {"__name__": "example"})
    assert printed.getvalue() == OUTPUT


@pytest.mark.parametrize("prefix", ["", "psk."], ids=["XX", "XXpsk3"])
def test_a_secure_channel_puts_the_same_bytes_on_the_wire(prefix: str) -> None:
    psk = PSK if prefix else None
    a = SecureChannel(ALICE, initiator=True, trust=lambda p: None, psk=psk, ephemeral=E_ALICE)
    b = SecureChannel(BOB, initiator=False, trust=lambda p: None, psk=psk, ephemeral=E_BOB)
    wire: dict[str, bytes] = {}
    events = []
    for name, sender, receiver in (
        ("frame1", a, b),
        ("frame2", b, a),
        ("frame3", a, b),
        ("ready", b, a),
    ):
        wire[name] = sender.data_to_send()
        receiver.receive_data(wire[name])
        while (event := receiver.next_event()) is not NEED_DATA:
            events.append(event)
    a.send(b"hello")
    wire["hello"] = a.data_to_send()
    b.receive_data(wire["hello"])
    assert b.next_event() == Message(data=b"hello")
    b.close()
    wire["close"] = b.data_to_send()
    for name, data in wire.items():
        assert data.hex() == VALUES[prefix + name], name
    done = [e for e in events if isinstance(e, HandshakeComplete)]
    assert len(done) == 2 and {e.sas for e in done} == {VALUES[prefix + "sas"]}
    assert a.handshake_hash.hex() == b.handshake_hash.hex() == VALUES[prefix + "h"]


@pytest.mark.parametrize("prefix", ["", "psk."], ids=["XX", "XXpsk3"])
def test_the_proofs_shown_sign_the_hashes_shown(prefix: str) -> None:
    for number, node in ((2, BOB), (3, ALICE)):
        proof = bytes.fromhex(VALUES[f"{prefix}payload{number}"])
        h = bytes.fromhex(VALUES[f"{prefix}h{number}"])
        assert len(proof) == 96 and NodeId(proof[:32]) == node.node_id
        assert verify_signature(proof[:32], SIGNATURE_DOMAIN + b"\x00" + h, proof[32:])
    sas = int(VALUES[prefix + "sas.digest"], 16) % 10**6
    assert f"{sas:06d}" == VALUES[prefix + "sas"]


def test_the_prose_quotes_the_same_codes_and_constants() -> None:
    text = DOC.read_text("utf-8")
    assert f"code `{VALUES['sas']}` (`{VALUES['psk.sas']}` with the invite key)" in text
    assert f"`{PROLOGUE.decode()}` (`{PROLOGUE.hex()}`)" in text
    assert f"`{PROTOCOL_NAME}`" in text and f"`{PSK_PROTOCOL_NAME}`" in text
