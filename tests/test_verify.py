"""`log verify` finds every kind of damage to a stored log, naming the entry."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import HybridClock
from agent.store.log_store import Draft, LogStore
from agent.store.verify import verify_log

from .conftest import seeded_identity
from .test_store import feed

ALICE, BOB = seeded_identity(1), seeded_identity(2)


def _populated(path: Path) -> LogStore:
    store = LogStore(path)
    clock = HybridClock()
    store.append(
        ALICE, clock, [Draft("readings/x", {"t": [1, 2], "v": {"a": [1.5, 2.5]}}) for _ in range(6)]
    )
    store.append(ALICE, clock, [Draft("config", {"k": "v"}, "site")])
    for e in feed(BOB, 5):
        store.insert(e)
    return store


@settings(max_examples=80)
@given(st.data())
@pytest.mark.slow
def test_any_single_bit_flip_in_a_stored_entry_is_detected(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = _populated(Path(tmp) / "log.db")
        assert verify_log(store).ok
        rows = store.connection.execute("SELECT change, seq, raw FROM entries").fetchall()
        change, seq, raw = data.draw(st.sampled_from(rows))
        bit = data.draw(st.integers(0, len(raw) * 8 - 1))
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        store.connection.execute(
            "UPDATE entries SET raw = ? WHERE change = ?", (bytes(flipped), change)
        )
        report = verify_log(store)
        assert not report.ok
        assert any(f"/{seq} " in fault.where for fault in report.faults), report.faults
        store.close()


def test_damaged_columns_and_swapped_entries_are_detected(tmp_path: Path) -> None:
    store = _populated(tmp_path / "log.db")
    conn = store.connection
    conn.execute("UPDATE entries SET ts = ts + 1 WHERE seq = 2 AND feed = 1")
    report = verify_log(store)
    assert [f.problem for f in report.faults] == [
        "stored columns (author, seq, ts, collection) disagree with the entry"
    ]
    conn.execute("UPDATE entries SET ts = ts - 1 WHERE seq = 2 AND feed = 1")
    # a valid entry moved into another feed's slot
    (bob_raw,) = conn.execute("SELECT raw FROM entries WHERE feed = 2 AND seq = 3").fetchone()
    conn.execute("UPDATE entries SET raw = ? WHERE feed = 1 AND seq = 3", (bob_raw,))
    problems = [f.problem for f in verify_log(store).faults]
    assert "stored columns (author, seq, ts, collection) disagree with the entry" in problems
    assert "prev does not match the hash of entry 3" in problems  # alice's seq 4 no longer chains
    store.close()


def test_a_wrong_head_is_detected(tmp_path: Path) -> None:
    store = _populated(tmp_path / "log.db")
    store.connection.execute("UPDATE feeds SET head_hash = zeroblob(32) WHERE id = 2")
    (fault,) = verify_log(store).faults
    assert "recorded head" in fault.problem and "/5 " in fault.where
    store.close()
