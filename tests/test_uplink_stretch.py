"""The outbox's stretches (a class's entries in a change range built by SQLite as
one value) on a real log: a pass reading stretches hands out exactly the
batches — byte for byte — and keeps exactly the bookkeeping that a pass
reading every entry as a row does, on random logs with several feeds, sizes
on both sides of the CBOR head boundaries and of the longest entry a stretch
carries, acknowledgements, a skipped author, priorities, and resends."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from sqlite3 import Connection

import pytest

from agent.clock import HybridClock
from agent.identity import Identity
from agent.store.log_store import Draft, LogStore
from agent.uplink import outbox
from agent.uplink.config import UplinkSettings
from agent.uplink.outbox import OutboxPass
from agent.uplink.outbox_read import STRETCH_MAX_ENTRY, PriorityClass, Stretch, read_stretch
from agent.uplink.wire import MAX_PAYLOAD, Batch, encode_entry_batch

from .conftest import seeded_identity

BOARD, OTHER, SKIPPED = seeded_identity(1), seeded_identity(2), seeded_identity(3)


@contextmanager
def rows_only() -> Iterator[None]:
    """The outbox as it reads without stretches: every entry a row."""
    before = outbox._STRETCH_ENTRIES
    outbox._STRETCH_ENTRIES = 1 << 40
    try:
        yield
    finally:
        outbox._STRETCH_ENTRIES = before


def append(store: LogStore, who: Identity, collection: str, n: int, pad: int) -> None:
    drafts = [Draft(collection, {"i": i, "p": "x" * pad}) for i in range(n)]
    store.append(who, HybridClock(), drafts)


def state(p: OutboxPass) -> tuple[object, ...]:
    feeds = [sorted((a, tuple(v)) for a, v in f.feeds.items()) for f in p.flights]
    return p.unacked_bytes, feeds, p.stats


def same_batch(stretched: OutboxPass, rows: OutboxPass, max_bytes: int) -> Batch:
    with rows_only():
        expected = rows.next_batch(max_bytes)
    batch = stretched.next_batch(max_bytes)
    assert batch.payload == expected.payload and len(batch) == len(expected)
    assert batch.payload == encode_entry_batch(list(batch))
    assert state(stretched) == state(rows)
    return batch


def test_stretches_are_taken_and_equal_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LogStore(tmp_path / "log.db") as store:
        for pad in range(60, 110):  # entries of 230 to 280 bytes: both sides of 256
            append(store, BOARD, "readings", 24, pad)
        taken = []

        def counted(conn: Connection, cls: PriorityClass, *args: int, **kw: int) -> Stretch:
            found = read_stretch(conn, cls, *args, **kw)
            taken.append(found.entries)
            return found

        monkeypatch.setattr("agent.uplink.outbox.read_stretch", counted)
        stretched = OutboxPass(store, UplinkSettings(max_unacked="1GB"), set)
        rows = OutboxPass(store, UplinkSettings(max_unacked="1GB"), set)
        sent = 0
        while batch := same_batch(stretched, rows, MAX_PAYLOAD):
            sent += len(batch)
        assert sent == 1200 and sum(taken) > 1000  # most of it went as stretches


@pytest.mark.parametrize("seed", range(10))
def test_random_logs_give_the_same_batches_either_way(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    now = [0.0]
    settings = UplinkSettings(
        priorities={"alarms": 9, "bulk": 1},
        low_share=0.25,
        resend_after=30.0,
        max_unacked=rng.choice(["64KB", "1MB", "1GB"]),
    )
    feeds = [BOARD, OTHER, SKIPPED]
    skip = {SKIPPED.node_id.key}
    acked: dict[bytes, int] = {}
    with LogStore(tmp_path / "log.db") as store:

        def fresh() -> OutboxPass:
            return OutboxPass(store, settings, lambda: skip, clock=lambda: now[0])

        stretched, rows = fresh(), fresh()
        for _ in range(150):
            action = rng.random()
            if action < 0.3:
                who = rng.choices(feeds, weights=[6, 3, 1])[0]
                collection = rng.choice(["alarms", "readings", "readings", "bulk", "new/a"])
                pad = rng.choice([0, 82, 83, 84, 150, 600, 1200, STRETCH_MAX_ENTRY])
                append(store, who, collection, rng.randrange(1, 60), pad)
            elif action < 0.65:
                same_batch(stretched, rows, rng.choice([1024, 8192, 32768, MAX_PAYLOAD]))
            elif action < 0.8:
                who = rng.choice(feeds[:2])
                author = who.node_id.key
                head = store.head(author)
                if head is not None:
                    seq = max(acked.get(author, 0), rng.randrange(head.seq + 1))
                    acked[author] = seq
                    store.batch([partial(store.delivery.record_ack_now, author, seq, b"c" * 32)])
                    stretched.note_acks({author: seq})
                    rows.note_acks({author: seq})
                    assert state(stretched) == state(rows)
            elif action < 0.95:
                now[0] += rng.choice([1.0, 10.0, 31.0])
            else:  # a reconnect: fresh passes from what the log holds
                stretched, rows = fresh(), fresh()
        while same_batch(stretched, rows, MAX_PAYLOAD):
            pass
