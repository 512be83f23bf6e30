"""Node identity: ids, fingerprints, and the key file's refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import IdentityError
from agent.identity import Identity, NodeId, load_identity, save_identity, verify_signature


@given(st.binary(min_size=32, max_size=32))
def test_node_id_round_trips(key: bytes) -> None:
    node = NodeId(key)
    text = str(node)
    assert text.startswith("lc1") and len(text) == 58
    assert NodeId.parse(text) == node
    assert NodeId.parse(text.upper().replace("LC1", "lc1", 1)) == node  # case-insensitive body


def test_a_mistyped_node_id_is_refused() -> None:
    text = str(Identity(b"\x07" * 32).node_id)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    detected = 0
    for i in range(3, len(text)):
        for c in alphabet:
            if c == text[i]:
                continue
            typo = text[:i] + c + text[i + 1 :]
            try:
                NodeId.parse(typo)
            except ValueError:
                detected += 1
    total = (len(text) - 3) * 31
    assert detected / total > 0.99  # a 16-bit checksum catches all but ~1/65536
    with pytest.raises(ValueError, match="start with"):
        NodeId.parse("xx" + text[2:])
    with pytest.raises(ValueError, match="characters"):
        NodeId.parse(text[:-1])


def test_fingerprint_is_short_and_stable() -> None:
    node = Identity(b"\x01" * 32).node_id
    assert node.fingerprint == Identity(b"\x01" * 32).node_id.fingerprint
    assert len(node.fingerprint) == 9 and node.fingerprint[4] == "-"
    assert node.fingerprint != Identity(b"\x02" * 32).node_id.fingerprint


def test_signatures_verify_only_for_the_signer() -> None:
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"hello")
    assert verify_signature(a.node_id.key, b"hello", sig)
    assert not verify_signature(b.node_id.key, b"hello", sig)
    assert not verify_signature(a.node_id.key, b"hellO", sig)
    assert not verify_signature(a.node_id.key, b"hello", sig[:-1] + bytes([sig[-1] ^ 1]))


def test_key_file_is_private_and_loads_back(tmp_path: Path) -> None:
    os.umask(0o022)
    ident = Identity.generate()
    path = tmp_path / "identity.key"
    save_identity(ident, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path).node_id == ident.node_id
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(IdentityError, match="refusing to replace"):
        save_identity(Identity.generate(), path)


def test_refuses_a_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="lichen init"):
        load_identity(tmp_path / "nope.key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_a_key_file_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.generate(), path)
    path.chmod(mode)
    with pytest.raises(IdentityError, match=f"chmod 600 {path}"):
        load_identity(path)


def test_refuses_an_unreadable_key_file(tmp_path: Path) -> None:
    """Root reads anything, so as root the check runs in a child that drops to nobody."""
    path = tmp_path / "identity.key"
    save_identity(Identity.generate(), path)
    if os.geteuid() != 0:
        path.chmod(0o000)
        with pytest.raises(IdentityError, match="cannot read identity"):
            load_identity(path)
        return
    tmp_path.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, try, report, exit without cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            load_identity(path)
            message = "loaded"
        except IdentityError as exc:
            message = str(exc)
        except BaseException as exc:
            message = repr(exc)
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode()
    os.close(read_end)
    assert message.startswith(f"cannot read identity {path}"), message


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[: len(t) // 2], "corrupt"),
        (lambda t: t.replace("secret", "secrat"), "missing"),
        (lambda t: t.replace('secret = "', 'secret = "!!'), "not base64"),
        (lambda t: t.replace('secret = "', 'secret = "AAAA'), "not 32 bytes"),
        (lambda t: t.replace('node = "lc1', 'node = "lc1a'), "belongs to"),
        (lambda t: "\x00\xff" + t, "corrupt"),
    ],
)
def test_refuses_a_corrupt_key_file(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.generate(), path)
    text = path.read_text("latin-1")
    path.write_bytes(mutate(text).encode("latin-1"))
    with pytest.raises(IdentityError, match=message) as info:
        load_identity(path)
    assert str(path) in str(info.value)
