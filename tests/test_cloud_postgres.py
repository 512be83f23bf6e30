"""The PostgreSQL sink against a real, throwaway PostgreSQL server: exactly once
with concurrent workers, the store's chain and fork rules, holes, and the
scale-out of two `lichen cloud` processes sharing one subscription group."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.clock import HybridClock
from agent.cloud.core import IngestCore
from agent.cloud.fleet import CloudFleet, load_fleet
from agent.cloud.ingest import Ingestor
from agent.cloud.postgres_sink import PostgresSink
from agent.cloud.sink import EntryQuery, SinkError
from agent.fleet import COLLECTION, fleet_id_of, op_body
from agent.identity import load_identity
from agent.store.log_store import LogStore
from agent.store.writer import LogWriter
from agent.uplink.wire import MAX_PAYLOAD, Topics, encode_entry_batch

from .conftest import run_lichen, seeded_identity
from .helpers.broker import Broker
from .helpers.cloud import (
    Feed,
    TestClient,
    ack_seqs,
    feed,
    http_get,
    make_cloud_home,
    retained_ack,
    start_cloud,
)
from .helpers.postgres import PostgresServer, start_postgres

FLEET = "farm"
_names = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.create_database(f"lichen_{next(_names)}")


class Worker:
    """An ingestor over the PostgreSQL sink, with its own identity and home log."""

    def __init__(self, dsn: str, path: Path, n: int) -> None:
        self.identity = seeded_identity(100 + n)
        self.writer = LogWriter(lambda: LogStore(path), self.identity, HybridClock())
        self.sink = PostgresSink(dsn, self.identity.node_id.key, client_id=f"w{n}")
        self.ingestor = Ingestor(IngestCore(max_entry_size=MAX_PAYLOAD), self.sink, self.writer)

    async def start(self) -> Worker:
        self.writer.start()
        await self.sink.open()
        return self

    async def close(self) -> None:
        await self.sink.close()
        await self.writer.close()


@pytest.fixture
async def workers(dsn: str, tmp_path: Path) -> AsyncIterator[list[Worker]]:
    pair = [await Worker(dsn, tmp_path / f"w{n}.db", n).start() for n in (1, 2)]
    yield pair
    for w in pair:
        await w.close()


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql).fetchall())


def up(f: Feed) -> str:
    return Topics(FLEET, f.node).up


@pytest.mark.slow
async def test_two_workers_store_overlapping_batches_exactly_once(
    workers: list[Worker], dsn: str
) -> None:
    boards = [feed(seeded_identity(110 + i), 40) for i in range(3)]
    jobs = []
    for board in boards:
        seqs = list(range(1, 41))
        # both workers get every entry, in different batchings and orders
        jobs += [(0, board, seqs[i : i + 7]) for i in range(0, 40, 7)]
        jobs += [(1, board, seqs[::-1][i : i + 5]) for i in range(0, 40, 5)]
    reports = await asyncio.gather(
        *(workers[w].ingestor.ingest(up(b), encode_entry_batch(b.raws(*s))) for w, b, s in jobs)
    )
    assert sum(r.stored for r in reports) == 120 and sum(r.rejected for r in reports) == 0
    assert sum(r.duplicates for r in reports) == 120
    assert rows(dsn, "SELECT count(*), count(DISTINCT (author, seq)) FROM lichen.entries") == [
        (120, 120)
    ]
    feeds = rows(dsn, "SELECT head_seq, entries, contiguous, acked_seq FROM lichen.feeds "
                      "WHERE NOT cloud")  # fmt: skip
    assert sorted(feeds) == [(40, 40, 40, 40)] * 3
    current = await workers[0].sink.current_acks([b.author for b in boards])
    assert {seq for seq, _ in current.values()} == {40}
    # whichever worker signed it, a board's acknowledgement is republished
    for board in boards:
        await workers[1].ingestor.ingest(up(board), encode_entry_batch(board.raws(40)))
    published = await workers[1].ingestor.due_acks(1e9, force=True)
    assert {p.topic for p in published} == {Topics(FLEET, b.node).ack for b in boards}
    assert all(set(ack_seqs(p.payload).values()) == {40} for p in published)


async def test_a_boards_quota_refuses_what_is_new_and_keeps_what_is_stored(
    dsn: str, tmp_path: Path
) -> None:
    board = feed(seeded_identity(125), 8)
    quota = sum(len(e.raw) for e in board.entries[:5]) + 10  # five entries fit, not six
    w = Worker(dsn, tmp_path / "w.db", 5)
    w.sink.quota = quota
    await w.start()
    try:
        report = await w.ingestor.ingest(up(board), encode_entry_batch(board.raws(*range(1, 9))))
        assert report.stored == 5
        assert [r.kind for r in report.rejections] == ["quota"] * 3
        assert "board_quota" in report.rejections[0].reason
        # a resend: the stored ones are duplicates (acknowledged again), the rest refused
        again = await w.ingestor.ingest(up(board), encode_entry_batch(board.raws(*range(1, 9))))
        assert (again.stored, again.duplicates, again.rejected) == (0, 5, 3)
        assert rows(dsn, "SELECT head_seq, entries, acked_seq FROM lichen.feeds "
                         "WHERE NOT cloud") == [(5, 5, 5)]  # fmt: skip
    finally:
        await w.close()


async def test_chain_and_fork_rules_and_holes(workers: list[Worker], dsn: str) -> None:
    w = workers[0]
    a = Feed(seeded_identity(120))
    for _ in range(3):
        a.add()
    twin = Feed(a.identity, a.entries[:1])
    twin.add(body={"t": [1], "v": {"x": [1]}})
    a.add_drops({a.node: [(4, 6)]})  # a's entry 4 declares 4..6 dropped (itself included)
    b = feed(seeded_identity(121), 3)
    await w.ingestor.ingest(up(a), encode_entry_batch(a.raws(1, 2)))
    report = await w.ingestor.ingest(up(a), encode_entry_batch(twin.raws(2) + a.raws(3)))
    (fork,) = report.rejections
    assert fork.kind == "fork" and fork.index == 0 and "different entry" in fork.reason
    ((seq, reason),) = rows(dsn, "SELECT seq, reason FROM lichen.forks")
    assert seq == 2 and "a different entry is stored at this seq" in str(reason)
    a.add()  # entry 5, after the drop record
    a.add()  # entry 6
    a.add()  # entry 7
    report = await w.ingestor.ingest(up(a), encode_entry_batch(a.raws(4, 7) + b.raws(2, 3)))
    assert report.stored == 4
    by_author = {bytes(r[0]): r[1:] for r in rows(dsn, "SELECT author, contiguous, acked_seq "
                                                       "FROM lichen.feeds")}  # fmt: skip
    assert by_author[a.author] == (7, 7)  # 5, 6 dropped by a itself
    assert by_author[b.author] == (0, 0)  # b's entry 1 is missing
    # a chain break: an entry 2 of b whose prev is not b's entry 1
    c = Feed(b.identity)
    c.add(body={"t": [2], "v": {}})
    c.add(body={"t": [3], "v": {}})
    report = await w.ingestor.ingest(up(b), encode_entry_batch(b.raws(1) + c.raws(2)))
    assert report.stored == 1 and report.rejections[0].kind == "fork"
    assert "prev" in report.rejections[0].reason or "different entry" in report.rejections[0].reason
    assert (await w.sink.current_acks([b.author]))[b.author][0] == 3


async def test_the_reader_streams_entries_and_lists_feeds(workers: list[Worker], dsn: str) -> None:
    board = feed(seeded_identity(130), 5)
    await workers[0].ingestor.ingest(up(board), encode_entry_batch(board.raws(1, 2, 3, 4, 5)))
    reader = await asyncio.to_thread(workers[0].sink.reader)
    try:
        found = list(reader.entries(EntryQuery(author=board.author, since_ms=1760000030000)))
        assert [e.seq for e in found] == [3, 4, 5]
        (info,) = [f for f in reader.feeds() if not f.own]
        assert (info.entries, info.head_seq, info.acked_seq) == (5, 5, 5)
        assert reader.totals()[0] == 5
    finally:
        reader.close()


@pytest.mark.slow
async def test_an_unreachable_database_is_a_sink_error(tmp_path: Path) -> None:
    sink = PostgresSink("host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2", b"\1" * 32)
    with pytest.raises(SinkError, match="cannot connect"):
        await sink.open()
    await sink.close()


@pytest.mark.slow
def test_two_cloud_processes_share_the_load_exactly_once(
    tmp_path: Path, mosquitto: Broker, postgres: PostgresServer
) -> None:
    """Scale-out: two workers, one shared subscription group, one database;
    four boards publishing concurrently, with resends."""
    dsn = postgres.create_database("scale")
    table = f'sink = "postgres"\npostgres = "{dsn}"\ngroup = "scale"\nack_interval = 0.2'
    homes = [tmp_path / "w1", tmp_path / "w2"]
    boards = [feed(seeded_identity(140 + i), 120) for i in range(4)]
    for home in homes:
        make_cloud_home(home, table, trust=[b.node for b in boards])
    with (
        start_cloud(homes[0], "--broker", mosquitto.url) as w1,
        start_cloud(homes[1], "--broker", mosquitto.url) as w2,
    ):

        def board_publishes(board: Feed) -> None:
            client = TestClient(mosquitto.port)
            try:
                topic = up(board)
                for start in range(1, 121, 10):
                    client.publish(topic, encode_entry_batch(board.raws(*range(start, start + 10))))
                    if start % 30 == 1:  # a resend of something already sent
                        client.publish(topic, encode_entry_batch(board.raws(start, start + 1)))
            finally:
                client.close()

        threads = [threading.Thread(target=board_publishes, args=(b,)) for b in boards]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

        def settled() -> bool:
            acked = rows(dsn, "SELECT acked_seq FROM lichen.feeds WHERE NOT cloud")
            return sorted(acked) == [(120,)] * 4

        w1.wait(settled, timeout=40, what="every feed acknowledged to its head")
        assert rows(dsn, "SELECT count(*), count(DISTINCT (author, seq)) FROM lichen.entries") == [
            (480, 480)
        ]
        w1.wait(  # status files are rewritten every 2 s
            lambda: sum(w.status()["cloud"]["messages"] for w in (w1, w2)) == 4 * (12 + 4),
            what="both status files to count every batch",
        )
        stats = [w.status()["cloud"] for w in (w1, w2)]
        assert all(s["messages"] > 0 for s in stats), "both workers took a share"
        assert all(s["sink_errors"] == 0 for s in stats), [w.log() for w in (w1, w2)]
        assert sum(s["entries_stored"] for s in stats) == 480
        assert sum(s["entries_rejected"] for s in stats) == 0
        workers = {load_identity(h / "identity.key").node_id.key for h in homes}
        for board in boards:
            retained_ack(mosquitto.port, Topics(FLEET, board.node).ack, None, {board.node: 120})
        assert {bytes(a) for (a,) in rows(dsn, "SELECT author FROM lichen.workers")} == workers
        code, body, _ = http_get(w2.http + "/v1/feeds")
        feeds = [f for f in json.loads(body)["feeds"] if not f["own"]]
        assert code == 200 and sorted(f["acked_seq"] for f in feeds) == [120] * 4
        shown = json.loads(run_lichen("status", "--json", home=homes[0]).stdout)
        assert shown["cloud"]["sink"] == "postgres"
        assert sorted(f["head_seq"] for f in shown["cloud"]["feeds"]) == [120] * 4


async def test_a_worker_learns_the_fleet_document_another_worker_stored(
    workers: list[Worker], tmp_path: Path
) -> None:
    admin = Feed(seeded_identity(120))
    fleet = fleet_id_of(admin.add(COLLECTION, op_body("create", name="farm")))
    board = feed(seeded_identity(121), 2)
    admin.add(COLLECTION, op_body("add", fleet, board.author, role="member", groups=[]))
    admin.add(COLLECTION, op_body("approve", fleet, board.author))
    documents = [CloudFleet(fleet), CloudFleet(fleet)]
    for worker, document in zip(workers, documents, strict=True):
        worker.ingestor.core.trusted, worker.ingestor.core.fleet = frozenset(), document
    first, second = (w.ingestor for w in workers)
    report = await first.ingest(
        up(board), encode_entry_batch([*admin.raws(1, 2, 3), *board.raws(1)])
    )
    assert report.stored == 4 and not report.rejections
    report = await second.ingest(up(board), encode_entry_batch(board.raws(2)))
    assert [r.kind for r in report.rejections] == ["untrusted"]  # it has not read it yet
    with LogStore(tmp_path / "w2.db") as own:  # what the role does every 10 s
        assert await load_fleet(documents[1], workers[1].sink, own)
    report = await second.ingest(up(board), encode_entry_batch(board.raws(2)))
    assert report.stored == 1 and not report.rejections
