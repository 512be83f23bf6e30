"""The document view: last writer wins by HLC, conflicts stay visible."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import HybridClock, pack
from agent.entry import Entry, sign_entry
from agent.identity import Identity
from agent.store.log_store import Draft, LogStore

from .conftest import seeded_identity
from .test_clock import DAY, NOW, YEAR, Wall

ALICE, BOB, CAROL = seeded_identity(1), seeded_identity(2), seeded_identity(3)


def test_later_local_write_replaces_the_earlier(store: LogStore, clock: HybridClock) -> None:
    store.append(ALICE, clock, [Draft("config", {"v": 1}, "site")])
    store.append(ALICE, clock, [Draft("config", {"v": 2}, "site")])
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.body == {"v": 2} and doc.conflicts == ()
    assert [e.body for e in store.documents.history("config", "site")] == [{"v": 1}, {"v": 2}]


def _version(
    identity: Identity,
    seq: int,
    prev: bytes | None,
    ts: int,
    body: object,
    base: Sequence[bytes] = (),
) -> Entry:
    return sign_entry(
        identity,
        seq=seq,
        prev=prev,
        ts=pack(ts),
        collection="config",
        body=body,
        doc_id="site",
        base=base,
    )


def test_concurrent_writes_last_writer_wins_and_the_other_is_a_conflict(store: LogStore) -> None:
    a = _version(ALICE, 1, None, 100, "alice")
    b = _version(BOB, 1, None, 200, "bob")
    store.insert(a)
    store.insert(b)
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.body == "bob" and [c.body for c in doc.conflicts] == ["alice"]


def test_equal_timestamps_break_ties_by_author(store: LogStore) -> None:
    a, b = _version(ALICE, 1, None, 100, "alice"), _version(BOB, 1, None, 100, "bob")
    store.insert(a)
    store.insert(b)
    winner = max((a, b), key=lambda e: e.author)
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.current == winner


def test_a_write_that_saw_both_resolves_the_conflict(store: LogStore, clock: HybridClock) -> None:
    store.insert(_version(ALICE, 1, None, 100, "alice"))
    store.insert(_version(BOB, 1, None, 200, "bob"))
    (merged,) = store.append(CAROL, clock, [Draft("config", "merged", "site")])
    assert len(merged.base) == 2
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.body == "merged" and doc.conflicts == ()


def test_a_replacing_version_wins_even_with_an_older_timestamp(store: LogStore) -> None:
    a = _version(ALICE, 1, None, 500, "alice")
    b = _version(BOB, 1, None, 100, "bob saw alice", base=[a.hash])  # bob's clock is behind
    store.insert(b)
    store.insert(a)
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.body == "bob saw alice" and doc.conflicts == ()


def test_deletion_is_a_null_version(store: LogStore, clock: HybridClock) -> None:
    store.append(ALICE, clock, [Draft("config", {"v": 1}, "site")])
    store.append(ALICE, clock, [Draft("config", None, "site")])
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.deleted


def test_a_version_cannot_replace_another_documents_version(store: LogStore) -> None:
    a = sign_entry(ALICE, seq=1, prev=None, ts=pack(1), collection="config", body=1, doc_id="one")
    b = sign_entry(
        BOB, seq=1, prev=None, ts=pack(2), collection="config", body=2, doc_id="two", base=[a.hash]
    )
    store.insert(a)
    store.insert(b)
    assert store.documents.get("config", "one").body == 1  # type: ignore[union-attr]
    assert list(store.documents.ids("config")) == ["one", "two"]


def test_pruning_keeps_current_versions(store: LogStore, clock: HybridClock) -> None:
    store.append(
        ALICE, clock, [Draft("config", {"v": 1}, "site"), Draft("config", {"v": 2}, "site")]
    )
    store.append(ALICE, clock, [Draft("readings/x", i) for i in range(5)])
    assert store.prune(ALICE.node_id.key, 100) == 6  # all but the current version
    doc = store.documents.get("config", "site")
    assert doc is not None and doc.body == {"v": 2}
    assert store.totals()[0] == 1


def _doc_history() -> list[Entry]:
    """Three authors editing one document; some edits concurrent, some informed."""
    a1 = _version(ALICE, 1, None, 100, "a1")
    b1 = _version(BOB, 1, None, 150, "b1")
    a2 = _version(ALICE, 2, a1.hash, 200, "a2", base=[a1.hash])
    c1 = _version(CAROL, 1, None, 250, "c1", base=sorted([a2.hash, b1.hash]))
    b2 = _version(BOB, 2, b1.hash, 300, "b2", base=[b1.hash])  # concurrent with c1
    return [a1, b1, a2, c1, b2]


@settings(max_examples=50)
@given(st.permutations(list(range(5))))
@pytest.mark.slow
def test_any_arrival_order_gives_the_same_document(order: list[int]) -> None:
    history = _doc_history()
    with tempfile.TemporaryDirectory() as tmp, LogStore(Path(tmp) / "log.db") as s:
        for i in order:
            s.insert(history[i])
        doc = s.documents.get("config", "site")
        assert doc is not None
        assert doc.body == "b2" and [c.body for c in doc.conflicts] == ["c1"]
        assert s.documents.leaf_hashes("config", "site") == tuple(
            sorted([history[3].hash, history[4].hash])
        )


def test_document_view_survives_wall_clock_jumps(tmp_path: Path) -> None:
    """Wall clock jumps back a day, then forward a year: every local write still wins."""
    wall = Wall(NOW)
    clock = HybridClock(wall)
    with LogStore(tmp_path / "log.db") as s:
        stamps = []
        for step, shift in enumerate([0, -DAY, 0, YEAR, -YEAR, 0]):
            wall.ms += shift
            (e,) = s.append(ALICE, clock, [Draft("config", {"step": step}, "site")])
            stamps.append(e.ts)
            doc = s.documents.get("config", "site")
            assert doc is not None and doc.body == {"step": step} and doc.conflicts == ()
        assert stamps == sorted(set(stamps))
    # a restart with the wall clock back in 1970 continues above the high-water mark
    wall.ms = 0
    with LogStore(tmp_path / "log.db") as s:
        restarted = HybridClock(wall)
        head = s.head(ALICE.node_id.key)
        assert head is not None
        restarted.observe(head.ts)
        (e,) = s.append(ALICE, restarted, [Draft("config", {"step": "after reboot"}, "site")])
        assert e.ts > stamps[-1]
        assert s.documents.get("config", "site").body == {"step": "after reboot"}  # type: ignore[union-attr]
