"""The cloud admits its fleet's members and applies the fleet's policy (the
ingestion core, no broker): a batch carrying the fleet document is judged
document first; a stranger, a pending member, a revoked member above its cut
and a member writing a collection its groups may not write are refused, each
with its kind and reason, whoever uploads them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.cloud.core import IngestCore
from agent.cloud.fleet import CloudFleet, load_fleet
from agent.cloud.ingest import Ingestor
from agent.cloud.sqlite_sink import SqliteSink
from agent.fleet import COLLECTION, fleet_id_of, op_body
from agent.identity import Identity
from agent.uplink.wire import MAX_PAYLOAD, Topics, encode_entry_batch

from .conftest import seeded_identity
from .helpers.cloud import Feed, feed
from .helpers.nodes import open_node

FLEET = "farm"


class Fleet:
    """An admin's feed founding a fleet, with helpers for its operations."""

    def __init__(self, admin: Identity) -> None:
        self.feed = Feed(admin)
        self.genesis = self.feed.add(COLLECTION, op_body("create", name="farm"))
        self.id = fleet_id_of(self.genesis)

    def op(self, op: str, node: Feed | None = None, **fields: object) -> bytes:
        key = None if node is None else node.author
        return self.feed.add(COLLECTION, op_body(op, self.id, key, **fields)).raw

    def member(self, node: Feed, groups: list[str] | None = None) -> list[bytes]:
        return [self.op("add", node, role="member", groups=groups or []), self.op("approve", node)]


def up(board: Feed, raws: list[bytes]) -> tuple[str, bytes]:
    return Topics(FLEET, board.node).up, encode_entry_batch(raws)


def kinds(judgement: object) -> list[tuple[int | None, str]]:
    return [(r.index, r.kind) for r in judgement.rejections]  # type: ignore[attr-defined]


def test_a_batch_with_the_fleet_document_admits_its_approved_member() -> None:
    fleet = Fleet(seeded_identity(80))
    board = feed(seeded_identity(81), 2)
    core = IngestCore(trusted=frozenset(), fleet=CloudFleet(fleet.id))
    # nothing known yet: the board uploads the document it holds, then its readings
    document = [fleet.genesis.raw, *fleet.member(board)]
    verdict = core.judge(*up(board, [*board.raws(1, 2), *document]))
    assert kinds(verdict) == []
    assert [a.index for a in verdict.accepted] == [0, 1, 2, 3, 4]


def test_strangers_pending_and_ruled_out_writers_are_refused_with_a_reason() -> None:
    fleet = Fleet(seeded_identity(82))
    ops, field, pending, stranger = (feed(seeded_identity(83 + i), 3) for i in range(4))
    cloud = CloudFleet(fleet.id)
    core = IngestCore(trusted=frozenset({field.author}), fleet=cloud)
    document = [
        fleet.genesis.raw,
        *fleet.member(ops, ["ops"]),
        *fleet.member(field, ["field"]),
        fleet.op("add", pending, role="member", groups=["ops"]),
        fleet.op("rule", collection="readings/*", write=["ops"]),
    ]
    assert kinds(core.judge(*up(ops, document))) == []
    assert cloud.membership.is_approved(ops.author) and cloud.membership.rules

    assert kinds(core.judge(*up(ops, ops.raws(1, 2, 3)))) == []
    stranger_verdict = core.judge(*up(stranger, stranger.raws(1)))
    assert kinds(stranger_verdict) == [(0, "untrusted")]
    assert "nor a member of the fleet" in stranger_verdict.rejections[0].reason
    pending_verdict = core.judge(*up(pending, pending.raws(1)))
    assert kinds(pending_verdict) == [(0, "pending")]
    # a member in the trust store too: the fleet's rule binds it all the same
    ruled = core.judge(*up(field, field.raws(1, 2)))
    assert kinds(ruled) == [(0, "rule"), (1, "rule")]
    assert "rule for 'readings/*'" in ruled.rejections[0].reason
    # an approved member relays another's entries: each judged by its author
    relayed = core.judge(*up(ops, [*field.raws(3), *stranger.raws(2)]))
    assert kinds(relayed) == [(0, "rule"), (1, "untrusted")]
    notes = field.add("notes", {"text": "not ruled"})
    assert kinds(core.judge(*up(field, [notes.raw]))) == []


def test_a_revoked_members_entries_above_the_cut_are_refused_and_those_below_kept() -> None:
    fleet = Fleet(seeded_identity(87))
    board = feed(seeded_identity(88), 5)
    cloud = CloudFleet(fleet.id)
    core = IngestCore(trusted=None, fleet=cloud)  # accept = "any": the fleet still binds
    cloud.learn(fleet.feed.entries)
    approve = fleet.member(board)
    cloud.learn(fleet.feed.entries)
    assert approve and cloud.membership.is_approved(board.author)
    revoke = fleet.op("revoke", board, upto=3, reason="stolen")
    verdict = core.judge(*up(board, [revoke, *board.raws(1, 2, 3, 4, 5)]))
    assert kinds(verdict) == [(4, "revoked"), (5, "revoked")]
    assert [a.entry.seq for a in verdict.accepted if a.entry.collection != COLLECTION] == [1, 2, 3]
    # a revoked node is no uploader for others any more
    other = feed(seeded_identity(89), 1)
    assert not cloud.may_upload(board.author, other.entries[0])
    assert kinds(IngestCore(trusted=frozenset(), fleet=cloud).judge(*up(board, other.raws(1)))) == [
        (0, "untrusted")
    ]


def test_the_cloud_loads_the_fleet_document_it_stored_and_counts_refusals(tmp_path: Path) -> None:
    fleet = Fleet(seeded_identity(90))
    board = feed(seeded_identity(91), 2)
    fleet.member(board)

    async def run() -> None:
        node = await open_node(tmp_path / "cloud.db")
        try:
            sink = SqliteSink(node.writer, tmp_path / "cloud.db", max_entry_size=MAX_PAYLOAD)
            await sink.open()
            first = Ingestor(IngestCore(trusted=frozenset(), fleet=CloudFleet(fleet.id)), sink,
                             node.writer)  # fmt: skip
            report = await first.ingest(*up(board, [*fleet.feed.raws(1, 2, 3), *board.raws(1)]))
            assert report.stored == 4 and not report.rejections
            # a restarted role learns the document back from its sink
            again = CloudFleet(fleet.id)
            assert await load_fleet(again, sink, node.reader)
            second = Ingestor(IngestCore(trusted=frozenset(), fleet=again), sink, node.writer)
            stranger = feed(seeded_identity(92), 1)
            report = await second.ingest(*up(board, [*board.raws(2), *stranger.raws(1)]))
            assert report.stored == 1 and [r.kind for r in report.rejections] == ["untrusted"]
            assert second.stats.rejected_by_kind == {"untrusted": 1}
            await sink.close()
        finally:
            await node.close()

    asyncio.run(run())
