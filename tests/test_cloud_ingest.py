"""The cloud's ingestion core and SQLite sink, without MQTT: exactly once,
out-of-order arrival, bad input named and refused beside good entries, forks,
holes declared by a feed's own author."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.clock import HybridClock
from agent.cloud.api import parse_readings_query
from agent.cloud.core import AckCoalescer, IngestCore, acked_feed
from agent.cloud.ingest import Ingestor
from agent.cloud.sqlite_sink import SqliteSink
from agent.config import parse_config
from agent.entry import decode_entry
from agent.errors import ConfigError
from agent.http_messages import ParameterError
from agent.identity import Identity, NodeId
from agent.store.log_store import LogStore
from agent.store.writer import LogWriter
from agent.uplink.wire import MAX_PAYLOAD, Topics, decode_entry_batch, encode_entry_batch

from .conftest import seeded_identity
from .helpers.cloud import Feed, feed

FLEET = "farm"


def up(f: Feed) -> str:
    return Topics(FLEET, f.node).up


class Cloud:
    """An ingestor over a real SQLite log, as ``lichen cloud`` builds it."""

    def __init__(self, path: Path, trusted: set[bytes] | None = None) -> None:
        self.identity = seeded_identity(90)
        self.path = path
        self.writer = LogWriter(lambda: LogStore(path), self.identity, HybridClock())
        self.sink = SqliteSink(self.writer, path, max_entry_size=MAX_PAYLOAD)
        core = IngestCore(trusted=trusted, max_entry_size=MAX_PAYLOAD)
        self.ingestor = Ingestor(core, self.sink, self.writer, ack_interval=0.5)
        self.reader = LogStore(path)

    async def start(self) -> Cloud:
        self.writer.start()
        await self.sink.open()
        return self

    async def ingest(self, topic: str, payload: bytes):
        return await self.ingestor.ingest(topic, payload)

    async def acks_published(self, now: float = 1e9) -> dict[str, dict[str, int]]:
        """Per ack topic: {feed node id: acknowledged seq}, from the due payloads."""
        out: dict[str, dict[str, int]] = {}
        for publication in await self.ingestor.due_acks(now, force=True):
            acks = out.setdefault(publication.topic, {})
            for raw in decode_entry_batch(publication.payload):
                entry = decode_entry(raw)
                assert entry.author == self.identity.node_id.key
                found = acked_feed(entry)
                assert found is not None
                acks[str(NodeId(found[0]))] = found[1]
        return out

    def acked(self, f: Feed) -> int:
        return self.reader.delivery.acked().get(f.author, 0)

    def held(self, f: Feed) -> int:
        head = self.reader.head(f.author)
        return 0 if head is None else head.entries

    async def close(self) -> None:
        await self.sink.close()
        await self.writer.close()
        self.reader.close()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    c = await Cloud(tmp_path / "cloud.db").start()
    yield c
    await c.close()


async def test_same_batch_twice_is_stored_once_and_acked_again(cloud: Cloud) -> None:
    board = feed(seeded_identity(1), 5)
    payload = encode_entry_batch(board.raws(1, 2, 3, 4, 5))
    first = await cloud.ingest(up(board), payload)
    assert (first.stored, first.duplicates, first.rejected) == (5, 0, 0)
    ack_topic = Topics(FLEET, board.node).ack
    assert await cloud.acks_published() == {ack_topic: {board.node: 5}}
    written = cloud.ingestor.stats.acks_written

    again = await cloud.ingest(up(board), payload)
    assert (again.stored, again.duplicates, again.rejected) == (0, 5, 0)
    assert cloud.held(board) == 5 and cloud.acked(board) == 5
    assert cloud.ingestor.stats.acks_written == written  # nothing advanced: no new entry
    # …but the board that resent gets the current acknowledgement again
    assert await cloud.acks_published() == {ack_topic: {board.node: 5}}
    rows = cloud.reader.connection.execute("SELECT count(*) FROM entries").fetchone()
    assert rows[0] == 5 + written  # the board's five and our acknowledgements


async def test_out_of_order_arrival_acks_only_the_contiguous_prefix(cloud: Cloud) -> None:
    board = feed(seeded_identity(2), 6)
    await cloud.ingest(up(board), encode_entry_batch(board.raws(4, 5)))
    assert cloud.held(board) == 2 and cloud.acked(board) == 0
    assert await cloud.acks_published() == {}  # nothing to acknowledge yet

    await cloud.ingest(up(board), encode_entry_batch(board.raws(1, 2)))
    assert cloud.acked(board) == 2
    await cloud.ingest(up(board), encode_entry_batch(board.raws(6)))
    assert cloud.acked(board) == 2  # 3 still missing
    await cloud.acks_published()
    await cloud.ingest(up(board), encode_entry_batch(board.raws(3)))  # the gap fills
    assert cloud.acked(board) == 6
    assert await cloud.acks_published() == {Topics(FLEET, board.node).ack: {board.node: 6}}


async def test_entries_of_other_feeds_are_acked_on_the_uploaders_topic(cloud: Cloud) -> None:
    mule, board = feed(seeded_identity(3), 1), feed(seeded_identity(4), 3)
    report = await cloud.ingest(up(mule), encode_entry_batch(mule.raws(1) + board.raws(1, 2, 3)))
    assert report.stored == 4
    assert await cloud.acks_published() == {
        Topics(FLEET, mule.node).ack: {mule.node: 1, board.node: 3}
    }


async def test_bad_entries_are_named_and_refused_beside_good_ones(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    board = feed(seeded_identity(5), 4)
    forged = bytearray(board.entries[2].raw)
    forged[-1] ^= 0x01  # flip a bit of the signature
    truncated = board.entries[3].raw[:-10]
    payload = encode_entry_batch(
        [board.entries[0].raw, bytes(forged), truncated, board.entries[1].raw]
    )
    with caplog.at_level(logging.WARNING, logger="lichen.cloud"):
        report = await cloud.ingest(up(board), payload)
    assert report.stored == 2
    kinds = {r.index: (r.kind, r.reason) for r in report.rejections}
    assert kinds[1][0] == "signature" and "signature does not verify" in kinds[1][1]
    assert kinds[2][0] == "malformed" and "truncated" in kinds[2][1]
    assert cloud.held(board) == 2 and cloud.acked(board) == 2
    logged = [r for r in caplog.records if r.getMessage() == "rejected"]
    assert len(logged) == 2
    fields = [r.fields for r in logged]  # type: ignore[attr-defined]
    assert {f["entry"] for f in fields} == {1, 2}
    assert all(f["topic"] == up(board) and f["reason"] for f in fields)
    stats = cloud.ingestor.stats
    assert stats.entries_rejected == 2 and stats.rejected_by_kind == {
        "signature": 1,
        "malformed": 1,
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\x00garbage", "not valid CBOR"),
        (encode_entry_batch([])[:1] + b"\x02", "not valid CBOR"),
        (b"\x83\x01\x80\x80", "[version, [entries]]"),
        (b"\x82\x02\x80", "version 2"),
        (b"\x82\x01\x81\x01", "byte strings"),
        (encode_entry_batch([b"x" * (MAX_PAYLOAD + 10)]), "limit is 131072"),
    ],
    ids=["garbage", "truncated", "shape", "version", "entries", "oversized"],
)
async def test_malformed_batches_are_refused_whole(
    cloud: Cloud, payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    board = feed(seeded_identity(6), 1)
    with caplog.at_level(logging.WARNING, logger="lichen.cloud"):
        report = await cloud.ingest(up(board), payload)
    assert report.stored == 0
    (rejection,) = report.rejections
    assert rejection.kind == "batch" and rejection.index is None
    assert reason in rejection.reason
    assert any(reason in str(getattr(r, "fields", {})) for r in caplog.records)
    assert cloud.ingestor.stats.messages_rejected == 1
    # the next honest batch still goes in
    assert (await cloud.ingest(up(board), encode_entry_batch(board.raws(1)))).stored == 1


async def test_a_topic_outside_the_up_pattern_is_refused(cloud: Cloud) -> None:
    board = feed(seeded_identity(7), 1)
    report = await cloud.ingest("lichen/v1/farm/extra/level/up", encode_entry_batch(board.raws(1)))
    assert report.stored == 0 and report.rejections[0].kind == "topic"


async def test_untrusted_authors_are_refused_when_only_trusted_are_accepted(
    tmp_path: Path,
) -> None:
    friend, stranger = feed(seeded_identity(8), 2), feed(seeded_identity(9), 2)
    c = await Cloud(tmp_path / "cloud.db", trusted={friend.author}).start()
    try:
        report = await c.ingest(
            up(friend), encode_entry_batch(friend.raws(1, 2) + stranger.raws(1))
        )
        assert report.stored == 2
        (rejection,) = report.rejections
        assert rejection.kind == "untrusted" and rejection.index == 2
        assert stranger.node in rejection.reason
        assert c.held(stranger) == 0
    finally:
        await c.close()


async def test_a_board_uploads_for_others_only_when_it_is_trusted_itself(tmp_path: Path) -> None:
    relay, board, stranger = (feed(seeded_identity(16 + i), 2) for i in range(3))
    c = await Cloud(tmp_path / "cloud.db", trusted={relay.author, board.author}).start()
    try:
        # a trusted relay carries a trusted board's entries
        report = await c.ingest(up(relay), encode_entry_batch(board.raws(1, 2)))
        assert report.stored == 2
        # a stranger's topic: neither its entries nor a trusted board's are stored
        report = await c.ingest(up(stranger), encode_entry_batch(board.raws(1) + stranger.raws(1)))
        assert [r.kind for r in report.rejections] == ["uploader", "untrusted"]
        assert stranger.node in report.rejections[0].reason
        report = await c.ingest("lichen/v1/farm/not-a-node/up", encode_entry_batch(board.raws(1)))
        assert report.rejections[0].kind == "topic" and "node id" in report.rejections[0].reason
    finally:
        await c.close()


async def test_a_fork_is_refused_and_recorded(cloud: Cloud) -> None:
    honest = feed(seeded_identity(10), 2)
    twin = Feed(honest.identity, honest.entries[:1])
    twin.add(body={"t": [1], "v": {"x": [1]}})  # a different entry 2
    await cloud.ingest(up(honest), encode_entry_batch(honest.raws(1, 2)))
    report = await cloud.ingest(up(honest), encode_entry_batch(twin.raws(2)))
    (rejection,) = report.rejections
    assert rejection.kind == "fork" and "different entry" in rejection.reason
    (fork,) = cloud.reader.forks()
    assert fork.seq == 2 and fork.hash == twin.entries[1].hash
    assert cloud.held(honest) == 2 and cloud.acked(honest) == 2


async def test_a_chain_break_is_refused(cloud: Cloud) -> None:
    board = feed(seeded_identity(11), 1)
    other = Identity(bytes([12]) * 32)
    stray = Feed(other)
    stray.add()
    # entry 2 of board naming a prev that is not board's entry 1
    from agent.entry import sign_entry

    bad = sign_entry(board.identity, seq=2, prev=stray.entries[0].hash, ts=2**40,
                     collection="readings/climate", body={"t": [1], "v": {}})  # fmt: skip
    await cloud.ingest(up(board), encode_entry_batch(board.raws(1)))
    report = await cloud.ingest(up(board), encode_entry_batch([bad.raw]))
    assert report.rejections[0].kind == "fork" and "prev" in report.rejections[0].reason


async def test_holes_count_only_when_the_feeds_own_author_declared_them(cloud: Cloud) -> None:
    a, b = Feed(seeded_identity(13)), feed(seeded_identity(14), 4)
    for _ in range(5):
        a.add()
    a.add_drops({a.node: [(3, 5)], b.node: [(1, 10)]})  # a's entry 6
    # a uploads 1, 2 and its drop record; b's entries 2..4 arrive, 1 never does
    report = await cloud.ingest(up(a), encode_entry_batch(a.raws(1, 2, 6) + b.raws(2, 3, 4)))
    assert report.stored == 6
    assert cloud.acked(a) == 6  # 3..5 dropped by a itself
    assert cloud.acked(b) == 0  # a cannot make the cloud give up on b's entry 1
    assert cloud.reader.delivery.hole_ranges(a.author) == [(3, 5)]
    assert cloud.reader.delivery.hole_ranges(b.author) == []
    await cloud.ingest(up(b), encode_entry_batch(b.raws(1)))
    assert cloud.acked(b) == 4
    # a late copy of a dropped entry is still stored once
    assert (await cloud.ingest(up(a), encode_entry_batch(a.raws(4)))).stored == 1


async def test_the_clouds_own_feed_is_never_acknowledged(cloud: Cloud) -> None:
    board = feed(seeded_identity(15), 1)
    await cloud.ingest(up(board), encode_entry_batch(board.raws(1)))
    own = list(cloud.reader.feed(cloud.identity.node_id.key))
    assert own and all(e.collection == "_acks" for e in own)
    written = cloud.ingestor.stats.acks_written
    # a board sends our own acknowledgement back: stored once, never acknowledged
    report = await cloud.ingest(up(board), encode_entry_batch([own[0].raw]))
    assert report.rejected == 0 and cloud.ingestor.stats.acks_written == written


async def test_compaction_keeps_the_current_ack_of_every_feed(tmp_path: Path) -> None:
    c = await Cloud(tmp_path / "cloud.db").start()
    boards = [feed(seeded_identity(20 + i), 3) for i in range(3)]
    try:
        for seq in (1, 2, 3):
            for b in boards:
                await c.ingest(up(b), encode_entry_batch(b.raws(seq)))
        me = c.identity.node_id.key
        assert c.reader.head(me).entries == 9  # type: ignore[union-attr]
        await c.writer.prune(me, c.reader.head(me).seq)  # type: ignore[union-attr]
        assert c.reader.head(me).entries == 3  # type: ignore[union-attr]
        await c.close()
        # a restart reads the current acknowledgements back from the compacted feed
        c = await Cloud(tmp_path / "cloud.db").start()
        current = await c.sink.current_acks([b.author for b in boards])
        assert {seq for seq, _ in current.values()} == {3}
        report = await c.ingest(up(boards[0]), encode_entry_batch(boards[0].raws(3)))
        assert report.duplicates == 1
        assert await c.acks_published() == {Topics(FLEET, boards[0].node).ack: {boards[0].node: 3}}
    finally:
        await c.close()


def test_coalescer_publishes_once_per_interval_and_never_loses_the_last() -> None:
    coalescer = AckCoalescer(0.5)
    topic = "lichen/v1/f/n/ack"
    coalescer.offer(topic, {b"a" * 32: (1, b"one")})
    assert [p.topic for p in coalescer.due(10.0)] == [topic]  # the first goes at once
    coalescer.offer(topic, {b"a" * 32: (2, b"two")})
    coalescer.offer(topic, {b"a" * 32: (3, b"three"), b"b" * 32: (1, b"b1")})
    assert coalescer.due(10.2) == []  # within the interval: held back
    assert coalescer.next_due() == pytest.approx(10.5)
    (publication,) = coalescer.due(10.5)
    assert decode_entry_batch(publication.payload) == [b"three", b"b1"]
    assert coalescer.due(11.0) == [] and coalescer.next_due() is None


def test_cloud_config_errors_name_the_key_and_the_fix() -> None:
    cases = {
        '[cloud]\nbroker = "http://x"\n': ["[cloud] broker", "mqtt://", "Fix:"],
        '[cloud]\naccept = "some"\n': ["[cloud] accept", "'any', 'trusted'"],
        '[cloud]\nboard_quota = "lots"\n': ["[cloud] board_quota", "not a size"],
        '[cloud]\nauthors = ["lc1nope"]\n': ["[cloud] authors", "lc1nope"],
        "[cloud]\nack_interval = -1\n": ["[cloud] ack_interval", "at least 0"],
        '[cloud]\ngroup = "a/b"\n': ["[cloud] group", "one MQTT topic level"],
        '[cloud]\nsink = "mysql"\n': ["[cloud] sink", "'sqlite', 'postgres'"],
        '[cloud]\nhttp = "localhost:http"\n': ["[cloud] http", "port"],
        '[cloud]\nhttp = "0.0.0.0:8480"\n': ["[cloud] http_token", "beyond this machine"],
        '[cloud]\nhttp = "[::]:8480"\n': ["[cloud] http_token", "127.0.0.1:8480"],
        '[cloud]\nhttp = "cloud.lan:80"\n': ["[cloud] http_token", "Bearer"],
        '[cloud]\nhttp_token = "short"\n': ["[cloud] http_token", "guessable"],
        "[cloud]\nbrokr = 1\n": ["unknown key", 'did you mean "broker"'],
    }
    for text, parts in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text, "cloud.toml")
        message = str(info.value)
        assert all(p in message for p in ["cloud.toml", *parts]), message
    config = parse_config(
        '[cloud]\nsink = "postgres"\npostgres = "dbname=x"\nhttp = "0.0.0.0:0"\n'
        'http_token = "0123456789abcdefXYZ"\n'
    ).cloud
    assert config.http_address == ("0.0.0.0", 0) and config.broker_url.port == 1883
    # safe by default: only trusted boards, each within a quota
    assert config.accept == "trusted" and config.board_quota_bytes == 10 * 1024**3


def test_readings_query_parameters_are_checked_by_name() -> None:
    node = str(seeded_identity(1).node_id)
    q = parse_readings_query([("node", node), ("from", "10"), ("to", "20"), ("limit", "5")])
    assert (q.from_ms, q.to_ms, q.limit) == (10, 20, 5)
    for params, name in [
        ([("node", "lc1xyz")], "node"),
        ([("from", "yesterday")], "from"),
        ([("from", "20"), ("to", "10")], "to"),
        ([("limit", "0")], "limit"),
        ([("collection", "bad name!")], "collection"),
        ([("colour", "red")], "colour"),
        ([("from", "1"), ("from", "2")], "from"),
    ]:
        with pytest.raises(ParameterError) as info:
            parse_readings_query(params)
        assert info.value.parameter == name and repr(name) in str(info.value)


async def test_http_server_keep_alive_head_and_bad_requests(cloud: Cloud) -> None:
    from agent.cloud.api import CloudApi
    from agent.http import HttpServer

    board = feed(seeded_identity(30), 3)
    await cloud.ingest(up(board), encode_entry_batch(board.raws(1, 2, 3)))
    server = HttpServer(CloudApi(cloud.sink.reader, lambda: {"running": True}), "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /v1/readings HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/readings?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /v1/feeds HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
            b"GET /v1/feeds HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        data = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
        statuses = re.findall(r"HTTP/1\.1 (\d{3})", data)
        assert statuses == ["200", "200", "200", "405", "200"]
        assert '"ok": true' in data and '"count":1' in data and board.node in data

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        data = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
        assert data.startswith("HTTP/1.1 400")
    finally:
        await server.close()


def test_entries_whose_signatures_were_verified_are_still_judged_on_everything_else() -> None:
    """A bundle's second pass skips only the Ed25519 checks its first pass made."""
    board, stranger = feed(seeded_identity(40), 2), feed(seeded_identity(41), 1)
    forged = bytearray(board.entries[1].raw)
    forged[-1] ^= 1
    core = IngestCore(trusted={board.author})
    raws = [board.entries[0].raw, bytes(forged), stranger.entries[0].raw, b"\x00"]
    kinds = {
        verified: [(r.index, r.kind) for r in core.judge_entries("b", raws,
                                                           signatures_verified=verified).rejections]
        for verified in (False, True)
    }  # fmt: skip
    assert kinds[False] == [(1, "signature"), (2, "untrusted"), (3, "malformed")]
    assert kinds[True] == [(2, "untrusted"), (3, "malformed")]
