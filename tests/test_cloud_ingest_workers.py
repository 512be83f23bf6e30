"""The cloud's ingest workers: entries checked in worker processes under a
backlog give exactly the stored rows, reports and acknowledgements that
in-process judging gives, forged and malformed entries included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.cloud.core import IngestCore, acked_feed
from agent.cloud.ingest import sqlite_ingestor
from agent.cloud.ingest_workers import MIN_MESSAGE_ENTRIES, IngestWorkers
from agent.entry import decode_entry
from agent.identity import NodeId
from agent.store.log_store import LogStore
from agent.uplink.wire import Topics, decode_entry_batch, encode_entry_batch

from .conftest import seeded_identity
from .helpers.cloud import Feed, feed

N = 3 * MIN_MESSAGE_ENTRIES  # entries per board: every batch is worth sending to a worker


def forged(raw: bytes) -> bytes:
    bad = bytearray(raw)
    bad[-1] ^= 0x01  # a bit of the signature
    return bytes(bad)


def batches() -> tuple[list[tuple[str, bytes]], set[bytes]]:
    """Messages from three trusted boards and a stranger: good batches, a
    forged signature and a truncated entry among good ones, a duplicate, a
    chain gap, a relayed entry, a small batch, a batch that does not decode."""
    a, b, c = (feed(seeded_identity(n), N) for n in (61, 62, 63))
    stranger = feed(seeded_identity(64), N)
    third = MIN_MESSAGE_ENTRIES

    def up(f: Feed, raws: list[bytes]) -> tuple[str, bytes]:
        return Topics("farm", f.node).up, encode_entry_batch(raws)

    a_raws, b_raws, c_raws = ([e.raw for e in f.entries] for f in (a, b, c))
    messages = [
        up(a, a_raws[:third]),
        up(b, b_raws[:third]),
        up(a, [*a_raws[third : 2 * third - 1], forged(a_raws[2 * third - 1])]),
        up(b, [*b_raws[third : 2 * third - 1], b_raws[2 * third - 1][:-7]]),
        up(stranger, [e.raw for e in stranger.entries[:third]]),
        up(a, a_raws[:third]),  # again: duplicates, acknowledged again
        up(c, c_raws[third:]),  # a gap: stored, not contiguous
        up(a, [*a_raws[2 * third :], b_raws[2 * third]]),  # relays one of b's
        up(c, c_raws[: MIN_MESSAGE_ENTRIES - 1]),  # small: judged in-process
        (Topics("farm", a.node).up, b"\xff\x00 not a batch"),
        up(a, [forged(a_raws[2 * third - 1]), *a_raws[2 * third - 1 :]]),
    ]
    return messages, {a.author, b.author, c.author}


async def ingest(path: Path, workers: IngestWorkers | None) -> dict[str, Any]:
    messages, trusted = batches()
    async with sqlite_ingestor(path, seeded_identity(90), trusted=trusted,
                               workers=workers) as ingestor:  # fmt: skip
        reports = []
        for i in range(0, len(messages), 4):  # groups, as the role takes them
            group = messages[i : i + 4]
            reports += await ingestor.ingest_many(group, waiting_bytes=1 << 30)
        acks: dict[str, dict[str, int]] = {}
        for publication in await ingestor.due_acks(1e9, force=True):
            for raw in decode_entry_batch(publication.payload):
                found = acked_feed(decode_entry(raw))
                assert found is not None
                acks.setdefault(publication.topic, {})[str(NodeId(found[0]))] = found[1]
        stats = ingestor.stats.as_json()
    own = seeded_identity(90).node_id.key
    with LogStore(path) as store:
        rows = store.connection.execute(
            "SELECT f.author, e.seq, e.raw FROM entries e JOIN feeds f ON f.id = e.feed"
            " WHERE f.author != ? ORDER BY f.author, e.seq",
            (own,),
        ).fetchall()
        acked = {str(NodeId(f)): s for f, s in store.delivery.acked().items()}
    for volatile in ("last_ingest_ms", "acks_published"):
        stats.pop(volatile)
    return {
        "reports": [
            (r.topic, r.stored, r.duplicates, r.rejections, r.acks_written) for r in reports
        ],
        "rows": [(bytes(a), s, bytes(r)) for a, s, r in rows],
        "acks": acks,
        "acked": acked,
        "stats": stats,
    }


@pytest.mark.slow
async def test_workers_on_and_off_store_and_reply_exactly_alike(tmp_path: Path) -> None:
    # the first group waits for the processes to come up (however slow this
    # machine is today: warm_s is long), so every large batch goes to them
    workers = IngestWorkers(workers=2, always=True, warm_s=600.0)
    with_workers = await ingest(tmp_path / "workers.db", workers)
    in_process = await ingest(tmp_path / "in-process.db", None)
    assert with_workers == in_process
    # the comparison means something: entries were stored and refused, and the
    # workers checked most batches and sent the bad ones back to be judged in full
    kinds = {r.kind for report in in_process["reports"] for r in report[3]}
    assert {"signature", "malformed", "untrusted", "batch"} <= kinds
    assert len(in_process["rows"]) > 3 * MIN_MESSAGE_ENTRIES
    status = workers.status()
    assert status["messages_checked"] == 6 and status["messages_fell_back"] == 3
    assert status["starts"] == 1 and status["stops"] == 1 and not workers.running


@pytest.mark.slow
async def test_past_warm_s_a_pool_still_starting_leaves_judging_in_process() -> None:
    workers = IngestWorkers(workers=2, always=True, warm_s=0.0)
    try:
        assert not workers.demand(0)  # started, not up yet
        assert not await workers.warmed()  # and not waited for: judged in-process meanwhile
        await workers.ready()
        assert await workers.warmed() and workers.demand(0)
    finally:
        await workers.close()
    assert not await workers.warmed()  # no pool: nothing to wait for


def test_judging_a_checked_payload_skips_only_the_checks_the_workers_made() -> None:
    board, stranger = feed(seeded_identity(66), 3), feed(seeded_identity(67), 1)
    core = IngestCore(trusted={board.author})
    payload = encode_entry_batch([*(e.raw for e in board.entries), stranger.entries[0].raw])
    topic = Topics("farm", board.node).up
    full, checked = core.judge(topic, payload), core.judge(topic, payload, checked=True)
    assert [a.entry for a in full.accepted] == [a.entry for a in checked.accepted]
    assert full.rejections == checked.rejections and [r.kind for r in full.rejections] == [
        "untrusted"
    ]
    # what the workers would have refused is not refused again: they never say "checked"
    forged_payload = encode_entry_batch([forged(board.entries[0].raw)])
    assert core.judge(topic, forged_payload).rejections[0].kind == "signature"
    assert core.judge(topic, forged_payload, checked=True).rejections == []


@pytest.mark.slow
async def test_workers_start_on_a_backlog_and_stop_when_idle() -> None:
    never = IngestWorkers(workers=0)
    assert not never.demand(1 << 40) and not never.running
    workers = IngestWorkers(workers=2, backlog_bytes=1000, idle_s=30.0)
    try:
        assert not workers.demand(999, now=0.0)
        assert await workers.check(encode_entry_batch([])) is False  # no pool: judged in full
        workers.demand(1000, now=1.0)
        assert workers.running
        await workers.ready()
        assert workers.demand(0, now=20.0)  # running: stays, and counts as used
        assert not await workers.stop_if_idle(now=49.0)
        assert await workers.stop_if_idle(now=50.0)
        status = workers.status()
        assert status["starts"] == 1 and status["stops"] == 1 and status["running"] is False
    finally:
        await workers.close()


@pytest.mark.slow
async def test_workers_that_die_leave_judging_in_process(tmp_path: Path) -> None:
    board = feed(seeded_identity(68), MIN_MESSAGE_ENTRIES)
    workers = IngestWorkers(workers=2, always=True)
    workers.demand(0)
    await workers.ready()
    assert workers._pool is not None
    workers._pool._pool.shutdown()  # as if the processes were gone
    payload = encode_entry_batch([e.raw for e in board.entries])
    async with sqlite_ingestor(tmp_path / "c.db", seeded_identity(90), workers=workers) as ing:
        (report,) = await ing.ingest_many([(Topics("farm", board.node).up, payload)])
    assert report.stored == MIN_MESSAGE_ENTRIES and not report.rejections
    status = workers.status()
    assert status["failures"] == 1 and status["running"] is False
