"""The sync session over real SQLite logs and a real Noise channel."""

from __future__ import annotations

from pathlib import Path

from agent.store.log_store import LogStore

from .helpers.nodes import open_node, run_sessions


async def test_two_logs_converge_and_a_repeat_sync_sends_nothing(tmp_path: Path) -> None:
    a = await open_node(tmp_path / "a.db")
    b = await open_node(tmp_path / "b.db")
    try:
        await a.append(1200)
        await b.append(300)
        ra, rb = await run_sessions(a, b)
        assert ra.ok and rb.ok, (ra, rb)
        assert ra.clean and rb.clean
        assert a.keys() == b.keys() and len(a.keys()) == 1500
        assert (ra.entries_sent, ra.entries_stored) == (1200, 300)
        assert (rb.entries_sent, rb.entries_stored) == (300, 1200)
        assert ra.duplicates == rb.duplicates == 0
        # checkpoints were stored: a second session sends no entry at all
        ra2, rb2 = await run_sessions(a, b)
        assert ra2.ok and rb2.ok
        assert ra2.entries_sent == rb2.entries_sent == 0
        assert ra2.sync_bytes_sent < 200, ra2
        # one new entry: only it travels
        await a.append(1)
        ra3, rb3 = await run_sessions(a, b)
        assert (ra3.entries_sent, rb3.entries_stored, rb3.entries_sent) == (1, 1, 0)
    finally:
        await a.close()
        await b.close()
    with LogStore(tmp_path / "b.db") as store:
        assert store.checkpoint(a.identity.node_id.key) > 0
