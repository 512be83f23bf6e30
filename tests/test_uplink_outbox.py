"""The board's side of the uplink on a real log: outbox, acknowledgements, retention."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.clock import HybridClock, pack
from agent.entry import sign_entry
from agent.identity import Identity
from agent.store.log_store import Draft, LogStore
from agent.uplink.acks import AckLedger
from agent.uplink.config import RetentionConfig, UplinkSettings
from agent.uplink.outbox import OutboxPass
from agent.uplink.retention import retention_pass
from agent.uplink.wire import (
    ACKS_COLLECTION,
    DROPS_COLLECTION,
    Batch,
    ack_body,
    batch_size,
    parse_drop_body,
)

from .conftest import seeded_identity

BOARD, OTHER, CLOUD = seeded_identity(1), seeded_identity(2), seeded_identity(9)


def append(store: LogStore, identity: Identity, collection: str, n: int, pad: int = 100) -> None:
    clock = HybridClock()
    store.append(identity, clock, [Draft(collection, {"i": i, "p": "x" * pad}) for i in range(n)])


def ack_entry(store: LogStore, feed: Identity, seq: int, cloud: Identity = CLOUD) -> bytes:
    """A cloud's acknowledgement, signed and stored like one arriving by MQTT."""
    head = store.head(cloud.node_id.key)
    entry = sign_entry(
        cloud,
        seq=(head.seq if head else 0) + 1,
        prev=head.hash if head else None,
        ts=pack(10**12 + (head.seq if head else 0)),
        collection=ACKS_COLLECTION,
        body=ack_body(seq),
        doc_id=str(feed.node_id),
    )
    store.insert(entry)
    return entry.raw


def keys(store: LogStore, raws: Sequence[bytes]) -> list[tuple[bytes, int]]:
    from agent.entry import decode_entry

    return [(e.author, e.seq) for e in (decode_entry(r) for r in raws)]


def drain(outbox: OutboxPass, max_bytes: int = 4096) -> list[Batch]:
    batches = []
    while batch := outbox.next_batch(max_bytes):
        assert batch_size(batch) <= max_bytes
        batches.append(batch)
    return batches


def test_every_unacked_entry_once_high_priority_first(tmp_path: Path) -> None:
    settings = UplinkSettings(priorities={"alarms": 9, "bulk": 1}, low_share=0.0)
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "bulk", 30)
        append(store, OTHER, "readings", 20)  # carried for another board
        append(store, BOARD, "alarms", 5)
        outbox = OutboxPass(store, settings, set)
        batches = drain(outbox)
        sent = [k for b in batches for k in keys(store, b)]
        assert len(sent) == len(set(sent)) == 55
        collections = [store.get(a, s).collection for a, s in sent]  # type: ignore[union-attr]
        assert collections[:5] == ["alarms"] * 5
        assert collections[5:25] == ["readings"] * 20 and collections[25:] == ["bulk"] * 30
        assert drain(outbox) == []  # nothing twice in one pass


def test_low_priorities_get_their_share(tmp_path: Path) -> None:
    settings = UplinkSettings(priorities={"alarms": 9, "bulk": 0}, low_share=0.25)
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "alarms", 200)
        append(store, BOARD, "bulk", 200)
        outbox = OutboxPass(store, settings, set)
        first_eight = [outbox.next_batch(2048) for _ in range(8)]
        starts = [store.get(*keys(store, b)[0]).collection for b in first_eight]  # type: ignore[union-attr]
        assert starts.count("bulk") == 2, starts  # every 4th batch starts with the lowest


def test_acks_and_resends(tmp_path: Path) -> None:
    now = [0.0]
    settings = UplinkSettings(resend_after=30.0)
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "readings", 10)
        outbox = OutboxPass(store, settings, lambda: {CLOUD.node_id.key}, clock=lambda: now[0])
        assert len([k for b in drain(outbox) for k in keys(store, b)]) == 10
        outbox.note_acks({BOARD.node_id.key: 6})
        assert drain(outbox) == []
        now[0] = 31.0  # 7..10 were never acknowledged: they come again, once
        again = [k for b in drain(outbox) for k in keys(store, b)]
        assert [s for _, s in again] == [7, 8, 9, 10] and outbox.stats.resent == 4
        # a new pass starts from the acknowledgements held in the log
        store.batch(
            [lambda: store.delivery.record_ack_now(BOARD.node_id.key, 8, CLOUD.node_id.key)]
        )
        fresh = OutboxPass(store, settings, lambda: {CLOUD.node_id.key})
        assert [s for b in drain(fresh) for _, s in keys(store, b)] == [9, 10]


def test_cloud_feeds_and_acks_are_never_sent_back(tmp_path: Path) -> None:
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "readings", 3)
        ack_entry(store, BOARD, 1)
        outbox = OutboxPass(store, UplinkSettings(), lambda: {CLOUD.node_id.key})
        assert {a for b in drain(outbox) for a, _ in keys(store, b)} == {BOARD.node_id.key}


def test_unacked_bytes_are_bounded(tmp_path: Path) -> None:
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "readings", 100, pad=1000)
        outbox = OutboxPass(store, UplinkSettings(max_unacked="20KB"), set)
        sent = [k for b in drain(outbox, 8192) for k in keys(store, b)]
        assert 15 <= len(sent) <= 25  # about 20 KB of 1 KB entries, then it waits
        outbox.note_acks({BOARD.node_id.key: sent[-1][1]})
        assert outbox.next_batch(8192)  # acknowledgements open the window again


def test_ledger_trusts_configured_or_first_seen_clouds(tmp_path: Path) -> None:
    from agent.entry import decode_entry

    me = BOARD.node_id.key
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "readings", 5)
        raw = ack_entry(store, BOARD, 4)
        rogue = ack_entry(store, BOARD, 5, cloud=OTHER)
        explicit = AckLedger(store, [str(CLOUD.node_id)], tmp_path / "clouds", me)
        assert [(a.seq, a.cloud) for a in explicit.new_acks()] == [(4, CLOUD.node_id.key)]
        nobody = AckLedger(store, [], tmp_path / "clouds", me)
        assert nobody.new_acks() == [] and nobody.mode == "none"
        assert nobody.screen([decode_entry(raw)]).accepted == []  # no trust on first use
        tofu = AckLedger(store, "first-seen", tmp_path / "clouds", me)
        assert tofu.new_acks() == []  # nobody trusted yet
        screened = tofu.screen([decode_entry(raw), decode_entry(rogue)])
        assert [e.raw for e in screened.accepted] == [raw]  # the first one only
        assert screened.refused["untrusted_cloud"] == 1
        assert [a.seq for a in tofu.new_acks()] == [4]
        assert (tmp_path / "clouds").read_text().strip() == str(CLOUD.node_id)
        again = AckLedger(store, "first-seen", tmp_path / "clouds", me)  # remembered
        assert [a.seq for a in again.new_acks()] == [4]
        assert AckLedger(store, [], tmp_path / "clouds", me).trusted == frozenset()


def test_retention_prunes_after_keep_after_ack(tmp_path: Path) -> None:
    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "readings", 10)
        t0 = 2_000_000_000_000
        b = BOARD.node_id.key
        store.batch([lambda: store.delivery.record_ack_now(b, 6, CLOUD.node_id.key, t0)])

        def run(now: int) -> int:
            (report,) = store.batch([
                lambda: retention_pass(
                    store, identity=BOARD, clock=HybridClock(), config=RetentionConfig(),
                    settings=UplinkSettings(), clouds=frozenset(), free_bytes=lambda: 10**12,
                    now_ms=now,
                )
            ])  # fmt: skip
            assert not isinstance(report, ValueError)
            return report.pruned

        assert run(t0 + 6 * 86_400_000) == 0  # acknowledged six days ago: kept
        assert run(t0 + 7 * 86_400_000) == 6
        assert [e.seq for e in store.feed(b)] == [7, 8, 9, 10]


@pytest.mark.parametrize("acked", [0, 5])
def test_quota_drops_lowest_priority_oldest_first_and_says_so(tmp_path: Path, acked: int) -> None:
    settings = UplinkSettings(priorities={"alarms": 9, "bulk": 1})
    with LogStore(tmp_path / "log.db") as store:
        b = BOARD.node_id.key
        append(store, BOARD, "bulk", 40, pad=500)
        append(store, BOARD, "alarms", 10, pad=500)
        append(store, BOARD, "_fleet", 2, pad=500)
        ack_entry(store, BOARD, acked or 1, cloud=CLOUD)
        if acked:
            store.batch([lambda: store.delivery.record_ack_now(b, acked, CLOUD.node_id.key)])
        held = store.totals()[1]
        quota = held // 2
        (report,) = store.batch([
            lambda: retention_pass(
                store, identity=BOARD, clock=HybridClock(),
                config=RetentionConfig(quota=str(quota)),
                settings=settings, clouds=frozenset({CLOUD.node_id.key}),
                free_bytes=lambda: 10**12,
            )
        ])  # fmt: skip
        assert not isinstance(report, ValueError)
        assert store.totals()[1] <= quota
        assert report.pruned == acked
        left = list(store.feed(b))
        assert sum(e.collection == "alarms" for e in left) == 10  # higher priority kept
        assert sum(e.collection == "_fleet" for e in left) == 2  # never dropped
        bulk = [e.seq for e in left if e.collection == "bulk"]
        assert bulk == list(range(41 - len(bulk), 41))  # the oldest went first
        (drop,) = [e for e in left if e.collection == DROPS_COLLECTION]
        record = parse_drop_body(drop.body)
        assert record.entries == report.dropped_entries == 40 - len(bulk) - acked
        assert record.collections == {"bulk": record.entries}
        assert record.feeds[str(BOARD.node_id)] == [(acked + 1, 40 - len(bulk))]
        assert store.delivery.contiguous_seq(b) == store.head(b).seq  # type: ignore[union-attr]
        assert store.head(CLOUD.node_id.key) is not None  # the cloud's acks stay


def test_backlog_counts_what_no_cloud_acknowledged(tmp_path: Path) -> None:
    from agent.uplink.backlog import backlog_status

    with LogStore(tmp_path / "log.db") as store:
        append(store, BOARD, "readings", 10)
        append(store, OTHER, "readings", 4)
        ack_entry(store, BOARD, 6)  # the cloud's own feed is never backlog
        clouds = {CLOUD.node_id.key}
        first = backlog_status(store, clouds)
        assert (first["entries"], first["feeds"]) == (14, 2)
        assert first["bytes"] == sum(
            len(e.raw) for a in (BOARD, OTHER) for e in store.feed(a.node_id.key)
        )
        store.batch(
            [lambda: store.delivery.record_ack_now(BOARD.node_id.key, 6, CLOUD.node_id.key)]
        )
        after = backlog_status(store, clouds)
        assert (after["entries"], after["feeds"]) == (8, 2)
        assert after["oldest_unacked_age_s"] is not None
