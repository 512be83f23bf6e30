"""The peer book and the trust store: small, human-readable node-local state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import LichenError
from agent.identity import Identity
from agent.mesh.peerbook import PeerBook
from agent.mesh.trust import TrustPolicy, TrustStore

from .conftest import run_lichen

A, B = str(Identity(b"\x0a" * 32).node_id), str(Identity(b"\x0b" * 32).node_id)


def test_peer_book_records_sightings_and_syncs_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    book = PeerBook(path)
    book.seen(A, "tcp://10.0.0.2:7400", heads_digest="abc")
    book.seen(A, "tcp://10.0.0.3:7400")
    book.synced(A, ok=True, sent=3, received=5)
    book.synced(B, ok=False, error="connection refused")
    assert not path.exists()  # nothing written until a flush
    assert book.flush() and not book.flush()
    again = PeerBook(path)
    a = again.get(A)
    assert a is not None and a.addresses == {"tcp": ["tcp://10.0.0.3:7400", "tcp://10.0.0.2:7400"]}
    assert (a.syncs, a.entries_sent, a.entries_received, a.synced_digest) == (1, 3, 5, "abc")
    b = again.get(B)
    assert b is not None and b.failures == 1 and b.last_error == "connection refused"
    assert [p["node"] for p in json.loads(path.read_text())["peers"]] == sorted([A, B])


def test_penalties_decay(tmp_path: Path) -> None:
    book = PeerBook(tmp_path / "peers.json")
    book.penalise(A, "forged entry", 4.0)
    record = book.get(A)
    assert record is not None and record.last_error == "forged entry"
    assert record.current_penalty(record.penalty_at_ms) == 4.0
    assert record.current_penalty(record.penalty_at_ms + 3_600_000) == pytest.approx(2.0)


def test_a_damaged_peer_book_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    path.write_text("{not json")
    book = PeerBook(path)
    assert len(book) == 0 and (tmp_path / "peers.json.damaged").read_text() == "{not json"


def test_trust_store_and_policy(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust.json")
    me = Identity(b"\x0c" * 32).node_id
    policy = TrustPolicy(store, own=me)
    peer = Identity(b"\x0a" * 32).node_id
    refusal = policy.decide(peer)
    # names the peer, and never invites anyone to trust whoever connected
    assert refusal is not None and str(peer) in refusal and "trust add" not in refusal
    assert not store.reload()  # nothing changed
    TrustStore(tmp_path / "trust.json").add(A)  # another process trusts A
    assert store.reload() and A in store
    assert store.remove(A)
    store.add(A, "shed")
    assert policy.decide(peer) is None
    other_view = TrustStore(tmp_path / "trust.json")  # another process sees the change
    assert [t.label for t in other_view.all()] == ["shed"]
    assert policy.decide(me) is not None and "itself" in policy.decide(me)  # type: ignore[operator]
    assert TrustPolicy(store, accept_any=True).decide(Identity(b"\x0d" * 32).node_id) is None
    with pytest.raises(LichenError, match="checksum"):
        store.add(A[:-1] + ("a" if A[-1] != "a" else "b"))
    assert store.remove(A) and not store.remove(A)


@pytest.mark.slow
def test_trust_cli(home: Path) -> None:
    assert "nobody is trusted" in run_lichen("trust", "list", home=home).stdout
    run_lichen("trust", "add", A, "--label", "greenhouse", home=home)
    assert (
        json.loads(run_lichen("trust", "list", "--json", home=home).stdout)[0]["label"]
        == "greenhouse"
    )
    bad = run_lichen("trust", "add", "lc1nonsense", home=home, check=False)
    assert bad.returncode == 1 and "characters" in bad.stderr
    run_lichen("trust", "remove", A, home=home)
    assert run_lichen("trust", "remove", A, home=home, check=False).returncode == 1
    assert "no peers met yet" in run_lichen("peers", home=home).stdout
    assert json.loads(run_lichen("peers", "--json", home=home).stdout) == []
