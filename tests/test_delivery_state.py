"""The log's delivery bookkeeping: holes, contiguity, acknowledgements, drops."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.store.delivery import MARK_GRANULARITY_MS, merge_ranges
from agent.store.log_store import LogStore
from agent.store.replication import FeedRange

from .conftest import seeded_identity
from .test_store import feed

BOB, CLOUD = seeded_identity(2), seeded_identity(9)
B = BOB.node_id.key


def test_merge_ranges() -> None:
    assert merge_ranges([10, 1, 2, 3, 7, 9, 2]) == [(1, 3), (7, 7), (9, 10)]
    assert merge_ranges([]) == []


@given(st.sets(st.integers(1, 40)), st.lists(st.tuples(st.integers(1, 40), st.integers(0, 5))))
@pytest.mark.slow
def test_contiguous_seq_counts_held_and_holes(held: set[int], holes: list[tuple[int, int]]) -> None:
    entries = feed(BOB, 40)

    with tempfile.TemporaryDirectory() as tmp, LogStore(Path(tmp) / "log.db") as store:
        store.insert(entries[0])  # the feed exists
        for seq in held:
            store.insert(entries[seq - 1])
        ranges = [(a, a + n) for a, n in holes]
        store.batch([lambda: store.delivery.add_holes_now(B, ranges, "test")])
        covered = {1} | held | {s for a, b in ranges for s in range(a, b + 1)}
        expected = 0
        while expected + 1 in covered:
            expected += 1
        assert store.delivery.contiguous_seq(B) == expected
        # resuming from a known contiguous point gives the same answer
        assert store.delivery.contiguous_seq(B, known=expected // 2) == expected


def test_holes_are_not_asked_for_again(tmp_path: Path) -> None:
    entries = feed(BOB, 10)
    with LogStore(tmp_path / "log.db") as store:
        for e in entries[:3] + entries[8:]:
            store.insert(e)
        assert store.replication.missing(FeedRange(B, 1, 10)) == [FeedRange(B, 4, 8)]
        store.batch([lambda: store.delivery.add_holes_now(B, [(5, 6)], "dropped")])
        assert store.replication.missing(FeedRange(B, 1, 10)) == [
            FeedRange(B, 4, 4),
            FeedRange(B, 7, 8),
        ]
        assert store.delivery.hole_ranges(B) == [(5, 6)]
        assert store.delivery.contiguous_seq(B) == 3
        store.insert(entries[3])
        assert store.delivery.contiguous_seq(B) == 6  # 4 held, 5–6 gone for good


def test_acks_only_advance_and_marks_are_hourly(tmp_path: Path) -> None:
    cloud = CLOUD.node_id.key
    with LogStore(tmp_path / "log.db") as store:
        t0 = 1_000_000_000
        assert store.batch([lambda: store.delivery.record_ack_now(B, 5, cloud, t0)]) == [True]
        assert store.batch([lambda: store.delivery.record_ack_now(B, 3, cloud, t0 + 1)]) == [False]
        assert store.batch([lambda: store.delivery.record_ack_now(B, 9, cloud, t0 + 10)]) == [True]
        assert store.delivery.acked() == {B: 9}
        assert store.delivery.acked_before(t0 + 9) == {
            B: 5
        }  # the second ack shares the hour's mark
        assert store.delivery.acked_before(t0 + 10) == {
            B: 9
        }  # … but the newest ack counts at its time
        later = t0 + MARK_GRANULARITY_MS
        store.batch([lambda: store.delivery.record_ack_now(B, 12, cloud, later)])
        assert store.delivery.acked_before(later) == {B: 12}
        assert store.delivery.acked_before(t0) == {B: 5}
        store.batch([lambda: store.delivery.forget_marks_now(B, 10)])
        assert store.delivery.acked_before(later) == {B: 12}
        assert store.delivery.acked_before(t0) == {}
        ((author, seq, by, at),) = store.delivery.ack_details()
        assert (author, seq, by, at) == (B, 12, cloud, later)


def test_dropped_entries_leave_counted_holes(tmp_path: Path) -> None:
    entries = feed(BOB, 6)
    with LogStore(tmp_path / "log.db") as store:
        for e in entries:
            store.insert(e)
        before_entries, before_bytes = store.totals()
        (dropped,) = store.batch(
            [lambda: store.delivery.drop_entries_now([(B, 2), (B, 3), (B, 5)], "q")]
        )
        assert not isinstance(dropped, ValueError)
        assert dropped.feeds == {B: [(2, 3), (5, 5)]} and dropped.entries == 3
        assert dropped.collections == {"c": 3}
        size = sum(len(entries[i].raw) for i in (1, 2, 4))
        assert dropped.bytes == size
        assert store.totals() == (before_entries - 3, before_bytes - size)
        assert [e.seq for e in store.feed(B)] == [1, 4, 6]
        assert store.delivery.contiguous_seq(B) == 6
        assert store.replication.missing(FeedRange(B, 1, 6)) == []
        assert dict(store.collections())["c"] == 3
