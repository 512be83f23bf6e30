"""The log store on real SQLite files: append, insert, forks, ranges, pruning."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import HybridClock, pack
from agent.entry import Entry, sign_entry
from agent.errors import ChainError, ForkError, StoreError
from agent.identity import Identity
from agent.store.log_store import Draft, InsertOutcome, LogStore
from agent.store.schema import SCHEMA_VERSION

from .conftest import seeded_identity

ALICE, BOB = seeded_identity(1), seeded_identity(2)


def feed(identity: Identity, n: int, collection: str = "c", start_ts: int = 1000) -> list[Entry]:
    """A valid feed of ``n`` entries, built without a store."""
    out: list[Entry] = []
    prev = None
    for seq in range(1, n + 1):
        entry = sign_entry(
            identity,
            seq=seq,
            prev=prev,
            ts=pack(start_ts + seq),
            collection=collection,
            body={"n": seq},
        )
        out.append(entry)
        prev = entry.hash
    return out


def test_append_assigns_seq_prev_and_increasing_timestamps(
    store: LogStore, clock: HybridClock
) -> None:
    entries = store.append(ALICE, clock, [Draft("c", i) for i in range(5)])
    entries += store.append(ALICE, clock, [Draft("d", "x")])
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].prev is None
    assert all(b.prev == a.hash for a, b in zip(entries, entries[1:]))
    assert all(b.ts > a.ts for a, b in zip(entries, entries[1:]))
    head = store.head(ALICE.node_id.key)
    assert head is not None and (head.seq, head.hash, head.entries) == (6, entries[-1].hash, 6)
    assert store.totals() == (6, sum(len(e.raw) for e in entries))
    assert store.collections() == [("c", 5), ("d", 1)]


def test_two_stores_on_one_file_append_to_one_feed_safely(tmp_path: Path) -> None:
    a, b = LogStore(tmp_path / "log.db"), LogStore(tmp_path / "log.db")
    clock_a, clock_b = HybridClock(), HybridClock(lambda: 1)  # b's wall clock is in 1970
    for i in range(10):
        (a if i % 2 else b).append(ALICE, clock_a if i % 2 else clock_b, [Draft("c", i)])
    entries = list(a.feed(ALICE.node_id.key))
    assert [e.seq for e in entries] == list(range(1, 11))
    assert all(y.ts > x.ts and y.prev == x.hash for x, y in zip(entries, entries[1:]))
    a.close()
    b.close()


def test_insert_is_idempotent(store: LogStore) -> None:
    entries = feed(BOB, 3)
    assert [store.insert(e) for e in entries] == [InsertOutcome.STORED] * 3
    assert [store.insert(e) for e in entries] == [InsertOutcome.DUPLICATE] * 3
    assert store.totals()[0] == 3


def test_a_fork_is_recorded_and_never_stored_over_the_first(store: LogStore) -> None:
    entries = feed(BOB, 3)
    for e in entries:
        store.insert(e)
    forged = sign_entry(
        BOB, seq=2, prev=entries[0].hash, ts=pack(1002), collection="c", body="other"
    )
    with pytest.raises(ForkError, match="different entry is stored at this seq") as info:
        store.insert(forged)
    assert info.value.where is not None and "/2" in info.value.where
    assert store.get(BOB.node_id.key, 2) == entries[1]
    (record,) = store.forks()
    assert (record.author, record.seq, record.hash) == (BOB.node_id.key, 2, forged.hash)
    # a successor that names a different predecessor is a fork too
    bad_next = sign_entry(BOB, seq=4, prev=b"\x00" * 32, ts=pack(1010), collection="c", body=4)
    with pytest.raises(ForkError, match="prev does not name the stored entry 3"):
        store.insert(bad_next)
    assert len(store.forks()) == 2
    assert store.head(BOB.node_id.key).seq == 3  # type: ignore[union-attr]


def test_fork_detected_against_a_later_entry_that_arrived_first(store: LogStore) -> None:
    entries = feed(BOB, 3)
    store.insert(entries[2])  # seq 3 first: it names entries[1] as prev
    other_2 = sign_entry(BOB, seq=2, prev=entries[0].hash, ts=pack(1002), collection="c", body="x")
    with pytest.raises(ForkError, match="stored entry 3 names a different prev"):
        store.insert(other_2)
    assert store.insert(entries[1]) == InsertOutcome.STORED
    assert store.insert(entries[0]) == InsertOutcome.STORED


def test_timestamps_must_increase_along_a_feed(store: LogStore) -> None:
    first = sign_entry(BOB, seq=1, prev=None, ts=pack(2000), collection="c", body=1)
    second = sign_entry(BOB, seq=2, prev=first.hash, ts=pack(1000), collection="c", body=2)
    store.insert(first)
    with pytest.raises(ChainError, match="timestamp does not increase"):
        store.insert(second)
    assert store.totals()[0] == 1 and store.forks() == []


def test_a_failed_insert_in_a_batch_leaves_the_others_committed(store: LogStore) -> None:
    good = feed(BOB, 2)
    fork = sign_entry(BOB, seq=1, prev=None, ts=pack(5), collection="c", body="fork")
    results = store.batch(
        [
            lambda: store.insert_now(good[0]),
            lambda: store.insert_now(fork),
            lambda: store.insert_now(good[1]),
        ]
    )
    assert results[0] == results[2] == InsertOutcome.STORED
    assert isinstance(results[1], ForkError)
    assert store.totals()[0] == 2 and len(store.forks()) == 1


@settings(max_examples=40)
@given(st.permutations(list(range(12))), st.integers(1, 3))
@pytest.mark.slow
def test_any_insertion_order_gives_the_same_heads(order: list[int], authors: int) -> None:
    import tempfile

    entries = [e for i in range(authors) for e in feed(seeded_identity(10 + i), 12 // authors)]
    order = [i for i in order if i < len(entries)]
    with tempfile.TemporaryDirectory() as tmp:
        with LogStore(Path(tmp) / "a.db") as in_order, LogStore(Path(tmp) / "b.db") as shuffled:
            for e in entries:
                in_order.insert(e)
            for i in order:
                shuffled.insert(entries[i])
            assert in_order.heads() == shuffled.heads()
            assert in_order.totals() == shuffled.totals()


def test_ranges_stream_in_order(store: LogStore) -> None:
    bob = feed(BOB, 50)
    for e in reversed(bob):
        store.insert(e)
    assert [e.seq for e in store.feed(BOB.node_id.key, 10, 14)] == [10, 11, 12, 13, 14]
    changes = list(store.changes_since(45))
    assert [c for c, _ in changes] == [46, 47, 48, 49, 50]
    assert [e.seq for _, e in changes] == [5, 4, 3, 2, 1]
    assert [e.seq for e in store.by_time("c", pack(1010), pack(1013))] == [10, 11, 12]
    assert [e.seq for e in store.by_time("c", newest_first=True, limit=2)] == [50, 49]
    assert list(store.by_time("nope")) == []
    assert [e.seq for _, e in store.latest_changes(3)] == [3, 2, 1]
    assert store.last_change() == 50


def test_change_counter_is_never_reused_after_pruning(store: LogStore, clock: HybridClock) -> None:
    store.append(ALICE, clock, [Draft("c", i) for i in range(5)])
    assert store.last_change() == 5
    assert store.prune(ALICE.node_id.key, 10) == 5
    (entry,) = store.append(ALICE, clock, [Draft("c", "after")])
    assert entry.seq == 6 and store.last_change() == 6
    assert [c for c, _ in store.changes_since(0)] == [6]


def test_pruning_below_a_watermark(store: LogStore, clock: HybridClock) -> None:
    store.append(ALICE, clock, [Draft("c", i) for i in range(10)])
    bob = feed(BOB, 10)
    for e in bob:
        store.insert(e)
    assert store.prune(BOB.node_id.key, 6) == 5
    assert [e.seq for e in store.feed(BOB.node_id.key)] == [6, 7, 8, 9, 10]
    head = store.head(BOB.node_id.key)
    assert head is not None and (head.low_seq, head.entries, head.seq) == (6, 5, 10)
    assert store.insert(bob[0]) == InsertOutcome.PRUNED  # not taken back
    assert store.prune(BOB.node_id.key, 3) == 0
    assert store.totals()[0] == 15
    assert dict(store.collections())["c"] == 15


def test_pruning_keeps_the_head_so_the_chain_continues(store: LogStore, clock: HybridClock) -> None:
    first = store.append(ALICE, clock, [Draft("c", i) for i in range(3)])
    store.prune(ALICE.node_id.key, 100)
    assert store.totals()[0] == 0
    (nxt,) = store.append(ALICE, clock, [Draft("c", "next")])
    assert nxt.seq == 4 and nxt.prev == first[-1].hash


def test_schema_version_and_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    LogStore(path, durability="full").close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this Lichen"):
        LogStore(path)


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
def test_durability_sets_synchronous(tmp_path: Path, durability: str, level: int) -> None:
    with LogStore(tmp_path / "log.db", durability=durability) as s:
        assert s.connection.execute("PRAGMA synchronous").fetchone()[0] == level


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a Lichen database"):
        LogStore(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return result.returncode == 0


def test_disk_full_fails_the_batch_and_loses_nothing_stored(
    tmp_path: Path, clock: HybridClock
) -> None:
    """A real full filesystem (a 1 MiB tmpfs) where we can mount one; else SQLite's page cap."""
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "1m")
    try:
        store = LogStore(disk / "log.db")
        if not mounted:
            store.connection.execute("PRAGMA max_page_count = 200")
        stored: list[Entry] = []
        with pytest.raises(StoreError, match="disk full") as info:
            for i in range(10_000):
                stored += store.append(ALICE, clock, [Draft("c", {"i": i, "pad": "x" * 500})])
        assert "nothing already stored was lost" in str(info.value)
        assert store.totals()[0] == len(stored) > 0
        assert list(store.feed(ALICE.node_id.key))[-1] == stored[-1]
        store.close()
        reopened = LogStore(disk / "log.db")
        assert reopened.totals()[0] == len(stored)
        reopened.close()
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _snapshot(path: Path) -> tuple[object, ...]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute(
                "SELECT change, feed, seq, ts, collection, raw FROM entries ORDER BY change"
            ).fetchall(),
            conn.execute("SELECT * FROM feeds ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM doc_versions ORDER BY change").fetchall(),
        )
    finally:
        conn.close()


def test_bad_input_is_refused_by_name_and_changes_nothing_stored(tmp_path: Path) -> None:
    from agent.entry import SIGNING_DOMAIN
    from agent.errors import BadSignature, EntryError, MalformedEntry, OversizedEntry

    path = tmp_path / "log.db"
    bob = feed(BOB, 3)
    with LogStore(path, max_entry_size=4096) as store:
        for e in bob:
            assert store.receive(e.raw) == InsertOutcome.STORED
        before = _snapshot(path)
        forged = bob[2].raw[:-64] + ALICE.sign(SIGNING_DOMAIN + bob[2].content)
        big = sign_entry(
            BOB,
            seq=4,
            prev=bob[2].hash,
            ts=pack(2000),
            collection="c",
            body="x" * 5000,
            max_size=1 << 16,
        )
        fork = sign_entry(BOB, seq=2, prev=bob[0].hash, ts=pack(1002), collection="c", body="lie")
        cases: list[tuple[bytes, type[EntryError], str]] = [
            (b"\x82\x58\x05garbage", MalformedEntry, "not in shortest form"),
            (bob[1].raw[:-3], MalformedEntry, "truncated|signature is not"),
            (b"\xa1\x01\x02", MalformedEntry, "not an entry"),
            (forged, BadSignature, "signature does not verify"),
            (big.raw, OversizedEntry, "cap is 4096"),
            (fork.raw, ForkError, "different entry is stored at this seq"),
        ]
        for raw, error, message in cases:
            with pytest.raises(error, match=message):
                store.receive(raw)
        assert _snapshot(path)[:3] == before  # nothing stored changed
        assert [f.hash for f in store.forks()] == [fork.hash]  # only the evidence was added
        assert store.receive(bob[1].raw) == InsertOutcome.DUPLICATE


def test_replication_offers_gaps_and_checkpoints(store: LogStore, clock: HybridClock) -> None:
    from agent.store.replication import FeedRange

    bob = feed(BOB, 10)
    for e in bob[:3] + bob[5:8]:  # hold 1-3 and 6-8
        store.insert(e)
    before = store.last_change()
    store.append(ALICE, clock, [Draft("c", i) for i in range(2)])
    assert store.replication.offer_all() == sorted(
        [FeedRange(BOB.node_id.key, 1, 8), FeedRange(ALICE.node_id.key, 1, 2)],
        key=lambda r: r.author,
    )
    assert store.replication.offer_since(before) == [FeedRange(ALICE.node_id.key, 1, 2)]
    assert store.replication.missing(FeedRange(BOB.node_id.key, 1, 10)) == [
        FeedRange(BOB.node_id.key, 4, 5),
        FeedRange(BOB.node_id.key, 9, 10),
    ]
    assert store.replication.missing(FeedRange(BOB.node_id.key, 6, 8)) == []
    assert store.replication.missing(FeedRange(seeded_identity(9).node_id.key, 1, 4)) == [
        FeedRange(seeded_identity(9).node_id.key, 1, 4)
    ]
    store.prune(BOB.node_id.key, 7)  # nothing below 7 is wanted again
    assert store.replication.missing(FeedRange(BOB.node_id.key, 1, 10)) == [
        FeedRange(BOB.node_id.key, 9, 10)
    ]
    assert list(store.replication.raw_range(FeedRange(BOB.node_id.key, 1, 10))) == [
        e.raw for e in bob[6:8]
    ]
    assert store.replication.checkpoint(BOB.node_id.key) == 0
    store.batch([lambda: store.replication.set_checkpoint_now(BOB.node_id.key, 40)])
    store.batch(
        [lambda: store.replication.set_checkpoint_now(BOB.node_id.key, 30)]
    )  # never backwards
    assert store.replication.checkpoint(
        BOB.node_id.key
    ) == 40 and store.replication.checkpoints() == {BOB.node_id.key: 40}


def test_a_version_1_log_is_migrated_with_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    bob = feed(BOB, 3)
    with LogStore(path) as store:
        for e in bob:
            store.insert(e)
    conn = sqlite3.connect(path)  # turn it back into a version 1 database
    for table in ("sync_checkpoints", "holes", "uplink_acks", "ack_marks"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with LogStore(path) as store:  # version 1 → current, entries intact
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert list(store.feed(BOB.node_id.key)) == bob
        assert store.replication.checkpoint(BOB.node_id.key) == 0
