"""The single writer thread: group commit, per-request errors, store failures."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.clock import HybridClock, pack
from agent.entry import sign_entry
from agent.errors import ForkError, OversizedEntry, StoreError
from agent.store.log_store import Draft, InsertOutcome, LogStore
from agent.store.writer import LogWriter

from .conftest import seeded_identity

ALICE, BOB = seeded_identity(1), seeded_identity(2)


def writer_for(path: Path) -> LogWriter:
    return LogWriter(
        lambda: LogStore(path, durability="full", max_entry_size=4096), ALICE, HybridClock()
    )


async def test_concurrent_appends_share_group_commits(tmp_path: Path) -> None:
    writer = writer_for(tmp_path / "log.db")
    writer.start()
    entries = await asyncio.gather(*(writer.append("c", i) for i in range(500)))
    await writer.close()
    assert sorted(e.seq for e in entries) == list(range(1, 501))
    assert writer.stats.commits < 500 / 4  # many appends per fsync
    assert writer.stats.largest_batch > 1
    with LogStore(tmp_path / "log.db") as s:
        assert s.totals()[0] == 500


async def test_an_entry_error_reaches_only_its_caller(tmp_path: Path) -> None:
    writer = writer_for(tmp_path / "log.db")
    writer.start()
    first = sign_entry(BOB, seq=1, prev=None, ts=pack(1), collection="c", body=1)
    fork = sign_entry(BOB, seq=1, prev=None, ts=pack(1), collection="c", body=2)
    results = await asyncio.gather(
        writer.append("c", "ok"),
        writer.append("c", "x" * 5000),  # over this writer's 4096-byte cap
        writer.insert(first),
        writer.insert(fork),
        writer.append_many([Draft("c", "a"), Draft("c", "y" * 5000)]),  # all or nothing
        return_exceptions=True,
    )
    await writer.close()
    assert isinstance(results[1], OversizedEntry)
    assert results[2] == InsertOutcome.STORED
    assert isinstance(results[3], ForkError)
    assert isinstance(results[4], OversizedEntry)
    with LogStore(tmp_path / "log.db") as s:
        assert [e.body for e in s.feed(ALICE.node_id.key)] == ["ok"]
        assert len(s.forks()) == 1


@dataclass(frozen=True)
class _FillTheDisk:
    """A write command of the test's own: the writer's connection may grow no more."""

    def apply(self, store: LogStore) -> None:
        store.connection.execute("PRAGMA max_page_count = 1")


async def test_store_failure_fails_the_whole_batch(tmp_path: Path) -> None:
    writer = writer_for(tmp_path / "log.db")
    writer.start()
    await writer.append("c", "before")
    await writer.execute(_FillTheDisk())
    results = await asyncio.gather(
        *(writer.append("c", "x" * 3000) for _ in range(10)), return_exceptions=True
    )
    await writer.close()
    assert all(isinstance(r, StoreError) and "disk full" in str(r) for r in results)
    with LogStore(tmp_path / "log.db") as s:
        assert [e.body for e in s.feed(ALICE.node_id.key)] == ["before"]


async def test_open_failure_is_raised_by_start(tmp_path: Path) -> None:
    bad = tmp_path / "log.db"
    bad.write_bytes(b"garbage" * 1000)
    writer = writer_for(bad)
    with pytest.raises(StoreError, match="not a Lichen database"):
        writer.start()
