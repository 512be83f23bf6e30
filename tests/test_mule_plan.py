"""The mule's cursor and what goes into the next bundle: a real SQLite log,
the bundle reader on what the plan's rows make."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent import encoding
from agent.bundle.reader import BundleEnd, BundleReader
from agent.bundle.writer import BundleWriter
from agent.identity import Identity
from agent.mule.cursor import MAX_FEEDS, PREFIX, Cursor, CursorError
from agent.mule.plan import pending, plan_carry, rows
from agent.sansio import NEED_DATA
from agent.store.log_store import LogStore

from .helpers.cloud import Feed, feed

ME = Identity.generate()


def test_a_cursor_round_trips_and_only_moves_forward() -> None:
    start = Cursor.start(ME.node_id.key)
    assert Cursor.decode("", ME.node_id.key) == start
    a, b = bytes(range(32)), bytes(range(1, 33))
    cursor = start.advanced([(a, 5), (b, 2)]).advanced([(a, 3)])
    assert cursor.after(a) == 5 and cursor.after(b) == 2 and cursor.after(bytes(32)) == 0
    text = cursor.encode()
    assert text.startswith("m1.") and "=" not in text and "/" not in text and "+" not in text
    assert Cursor.decode(text, ME.node_id.key) == cursor


def test_a_cursor_of_another_board_or_garbage_is_refused_by_name() -> None:
    other = Cursor.start(Identity.generate().node_id.key).advanced([(bytes(32), 1)]).encode()
    with pytest.raises(CursorError, match="another board"):
        Cursor.decode(other, ME.node_id.key)
    bad_shape = "m1." + base64.urlsafe_b64encode(encoding.dumps([1, 2])).decode().rstrip("=")
    for text, reason in [("nope", "begin with m1."), ("m1.!!!", "does not decode"),
                         (bad_shape, "wrong shape")]:  # fmt: skip
        with pytest.raises(CursorError, match=reason):
            Cursor.decode(text, ME.node_id.key)


def test_a_cursor_keeps_at_most_max_feeds_the_furthest_ones() -> None:
    many = [(i.to_bytes(PREFIX, "big") + bytes(24), i + 1) for i in range(MAX_FEEDS + 10)]
    cursor = Cursor.start(ME.node_id.key).advanced(many)
    assert len(cursor.seqs) == MAX_FEEDS
    assert cursor.after(many[0][0]) == 0 and cursor.after(many[-1][0]) == MAX_FEEDS + 10
    assert len(cursor.encode()) < 64 + MAX_FEEDS * 32


def _store(tmp_path: Path, feeds: list[Feed]) -> LogStore:
    store = LogStore(tmp_path / "log.db")
    for f in feeds:
        for entry in f.entries:
            store.insert(entry)
    return store


def _bundle(store: LogStore, plan_, collections=()) -> tuple[list[tuple[bytes, int]], int]:
    writer = BundleWriter(ME.node_id.key, created_ms=1)
    out = [writer.data_to_send()]
    for author, seq, raw in rows(store, plan_, collections):
        writer.add(author, seq, raw)
        out.append(writer.data_to_send())
    writer.finish(ME.sign)
    out.append(writer.data_to_send())
    data = b"".join(out)
    reader = BundleReader(max_entry_size=16384)
    reader.receive_data(data)
    reader.receive_data(b"")
    got = []
    while (event := reader.next_event()) is not NEED_DATA:
        if isinstance(event, BundleEnd):
            break
        got += [(e.author, e.seq) for e in getattr(event, "entries", [])]
    return got, len(data)


def test_the_budget_goes_to_the_boards_own_feed_first_then_resumes(tmp_path: Path) -> None:
    # another node's feed sorts before ours by key, so only the plan puts ours first
    others = sorted((Identity.generate() for _ in range(8)), key=lambda i: i.node_id.key)
    me = Identity.generate()
    while me.node_id.key < others[0].node_id.key:
        me = Identity.generate()
    other = others[0]
    mine, theirs = feed(me, 30), feed(other, 30)
    store = _store(tmp_path, [mine, theirs])
    cloud = Identity.generate().node_id.key
    own = me.node_id.key
    size = len(mine.entries[0].raw)
    cursor = Cursor.start(own)
    plan = plan_carry(store, cursor, 20 * size, own=own, clouds={cloud})
    assert not plan.complete and list(plan.spans) == [own]
    got, length = _bundle(store, plan)
    assert length <= 20 * size
    assert got == [(own, s) for s in range(1, plan.spans[own][1] + 1)]
    assert pending(store, cursor, own=own, clouds={cloud}).entries == 60
    # the phone keeps the cursor: the next bundle continues our feed, then theirs
    assert plan.cursor is not None
    nxt = plan_carry(store, plan.cursor, 10**6, own=own, clouds={cloud})
    assert nxt.complete and nxt.spans[own] == (plan.spans[own][1], 30)
    assert nxt.spans[other.node_id.key] == (0, 30)
    got, _ = _bundle(store, nxt)
    assert sorted(got) == got and len(got) == 60 - plan.entries
    assert nxt.cursor is not None
    assert pending(store, nxt.cursor, own=own, clouds={cloud}).entries == 0
    # what a cloud acknowledged is not carried, nor the clouds' own feeds
    store.batch([lambda: store.delivery.record_ack_now(own, 25, cloud)])
    fresh = plan_carry(store, cursor, 10**6, own=own, clouds={other.node_id.key})
    assert fresh.spans == {own: (25, 30)}
    store.close()


def test_public_collections_only_and_a_budget_too_small(tmp_path: Path) -> None:
    me = Feed(ME)
    for i in range(10):
        me.add("readings/weather" if i % 2 else "readings/secret")
    store = _store(tmp_path, [me])
    own = ME.node_id.key
    plan = plan_carry(store, Cursor.start(own), 10**6, own=own, clouds=(),
                      collections=("readings/weather",))  # fmt: skip
    got, _ = _bundle(store, plan, ("readings/weather",))
    assert [s for _, s in got] == [2, 4, 6, 8, 10]
    assert plan.cursor is not None and plan.cursor.after(own) == 10
    tiny = plan_carry(store, Cursor.start(own), 1100, own=own, clouds=())
    assert tiny.entries == 0 and tiny.first_too_large == len(me.entries[0].raw)
    store.close()


def test_a_handover_takes_only_what_an_accepted_cloud_wrote_for_boards() -> None:
    from agent.mule.handover import screen_handover
    from agent.uplink.wire import ack_body, encode_entry_batch

    cloud, stranger = Feed(Identity.generate()), Feed(Identity.generate())
    board = str(ME.node_id)
    ack = cloud.add("_acks", ack_body(7), doc_id=board)
    note = cloud.add("notes", {"text": "not for boards"})
    foreign = stranger.add("_acks", ack_body(9), doc_id=board)
    forged = bytearray(cloud.add("_acks", ack_body(8), doc_id=board).raw)
    forged[-2] ^= 1
    clouds = {cloud.author}

    def screen(*raws: bytes):
        return screen_handover(encode_entry_batch(raws), clouds, max_payload=65536,
                               max_entry_size=16384)  # fmt: skip

    assert [e.raw for e in screen(ack.raw).entries] == [ack.raw]
    for raws, kind in [((note.raw,), "not_for_boards"), ((foreign.raw,), "not_accepted"),
                       ((bytes(forged),), "forged"), ((b"\x00",), "malformed")]:  # fmt: skip
        judged = screen(ack.raw, *raws)
        assert judged.entries == [] and [(r.index, r.kind) for r in judged.refusals] == [(1, kind)]


async def test_at_most_max_streams_bundles_are_sent_at_once(tmp_path: Path) -> None:
    from agent.http import Request
    from agent.mule.api import MuleApi, MuleRules
    from agent.node import Node

    async def took(_entries: object) -> None:
        return None

    cloud = Identity.generate().node_id.key
    async with Node(tmp_path / "log.db", ME) as node:
        store = _store(tmp_path, [feed(ME, 3)])
        store.close()
        api = MuleApi(node, MuleRules(max_streams=1), clouds=lambda: frozenset({cloud}),
                      seal_to=lambda: cloud, took=took)  # fmt: skip

        def ask(client: str) -> Request:
            return Request("GET", "/mule/v1/bundle", [("budget", "65536")], {}, client=client)

        first = await api(ask("10.0.0.1"))
        assert first.status == 200 and first.close is not None
        busy = await api(ask("10.0.0.2"))
        assert busy.status == 503 and ("retry-after", "2") in busy.headers
        await first.close()
        again = await api(ask("10.0.0.2"))
        assert again.status == 200 and again.close is not None
        await again.close()
