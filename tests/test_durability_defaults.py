"""The durability defaults docs/decisions.md states (## Service), pinned: a
change to any of them must change this test and that page together."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.board import load_board
from agent.config import Config
from agent.store.log_store import LogStore


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_log_is_wal_with_the_chosen_synchronous_mode(
    tmp_path: Path, durability: str, synchronous: int
):
    store = LogStore(tmp_path / "log.db", durability=durability)
    try:
        conn: sqlite3.Connection = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        # SQLite's automatic checkpoint (every 1000 WAL pages), which fsyncs the database
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        store.close()


def test_default_durability_and_the_boards_choices():
    assert Config().log.durability == "normal"
    # a Pi 4 (often on mains with a decent card) pays one fsync per group commit;
    # a Zero 2 W (batteries, cheap cards) keeps the default
    assert load_board("rpi-4").limits["durability"] == "full"
    assert load_board("rpi-zero-2w").limits["durability"] == "normal"
