"""Contact windows over emulated BLE: Bumble controllers on one in-process
``LocalLink``, and everything above them real (the BLE transport, the Noise
channel, sync sessions, SQLite logs, gossip).

* A scanning node connects only when a board's advertised heads digest differs
  from its own: equal heads, no connection however often it hears the board;
  the board holding something new, or lacking something the scanner holds,
  and it connects and syncs.
* A contact cut short (the phone walks out of range after a bounded number of
  bytes) carried the board's own readings first, then the clouds'
  acknowledgements, then other nodes' feeds; what the phone stored verifies,
  every feed a whole prefix of its chain; the next contact brings the rest
  without fetching again what crossed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from lichen_ble import BleConfig, BleTransport
from lichen_ble.controllers import make_link
from lichen_ble.tests.helpers import OutOfRange, local_link

from agent.channel import open_channel
from agent.config import MeshConfig
from agent.entry import Entry, entry_hash, sign_entry
from agent.identity import Identity
from agent.mesh import SessionReport, SyncSession
from agent.mesh.gossip import heads_digest
from agent.store.verify import verify_log
from agent.testing import wait_until
from agent.uplink.wire import ACKS_COLLECTION

from .helpers.mesh import gossip_for_node, node_context
from .helpers.nodes import Node, open_node

pytest.importorskip("bumble")

# keys sort OTHER < CLOUD < BOARD: the board's offer lists its own feed last
BOARD, CLOUD, OTHER, PHONE = (Identity(bytes([n]) * 32) for n in (9, 2, 8, 4))
OWN, ACKS, OTHERS = 60, 10, 40


def signed_feed(identity: Identity, n: int, collection: str, size: int) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, n + 1):
        prev = entry_hash(entries[-1].raw) if entries else None
        body = {"i": seq, "pad": "x" * size}
        entries.append(sign_entry(identity, seq=seq, prev=prev, ts=1_700_000_000_000 + seq,
                                  collection=collection, body=body))  # fmt: skip
    return entries


def held(node: Node, identity: Identity) -> list[int]:
    keys = node.keys()  # (author, seq) of every entry held
    return sorted(seq for author, seq in keys if author == identity.node_id.key)


@contextlib.asynccontextmanager
async def nodes(tmp_path: Path, *identities: Identity) -> AsyncIterator[list[Node]]:
    opened = [await open_node(tmp_path / f"{i}.db", identity) for i, identity in
              enumerate(identities)]  # fmt: skip
    try:
        yield opened
    finally:
        for node in opened:
            await node.close()


def transport(node: Node, hci: str, **config: Any) -> BleTransport:
    return BleTransport(BleConfig(name="ble", hci=hci, **config), node_context(node, "ble"))


# ------------------------------------------------------------ whether to connect


@pytest.mark.slow
async def test_a_scanning_node_connects_only_when_the_advertised_heads_digest_differs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with nodes(tmp_path, BOARD, PHONE) as (board, phone):
        await board.append(5)
        await phone.writer.receive_many(signed_feed(OTHER, 3, "readings/other", 40))
        await board.writer.receive_many(signed_feed(OTHER, 3, "readings/other", 40))
        board_entries = board.log.entries(BOARD.node_id.key, 1, 5, 10)
        await phone.writer.receive_many(board_entries)
        assert heads_digest(board.reader) == heads_digest(phone.reader)
        hci = local_link()
        board_ble = transport(board, hci, scan=False)
        phone_ble = transport(phone, hci, listen=False)
        config = MeshConfig(live=False)  # one session per contact
        board_gossip, _ = gossip_for_node(tmp_path, 0, board, board_ble, [phone], config=config)
        phone_gossip, _ = gossip_for_node(tmp_path, 1, phone, phone_ble, [board], config=config)
        await board_gossip.start()
        await phone_gossip.start()
        try:
            connections: list[Any] = []
            board_ble.radio.device.on("connection", connections.append)
            heard = count_adverts(phone_ble)

            async def hears_the_board(times: int) -> None:
                start = heard[0]
                await wait_until(lambda: heard[0] >= start + times, what="the board's adverts")

            await hears_the_board(20)  # two seconds of advertisements, the same heads
            assert connections == [] and phone_gossip.completed == 0

            await board.append(1)  # the board holds something new
            board_gossip.poke()
            await wait_until(lambda: held(phone, BOARD) == list(range(1, 7)), what="the new entry")
            await wait_until(lambda: phone_gossip.completed == 1, what="the session's end")
            assert connections, "the phone got the entry without connecting"
            after_sync = len(connections)
            await hears_the_board(20)  # equal heads again: the phone leaves it alone
            assert len(connections) == after_sync and phone_gossip.completed == 1

            await phone.append(1, collection="readings/phone")  # the board lacks something
            phone_gossip.poke()
            await wait_until(lambda: held(board, PHONE) == [1], what="the board to get it")
            assert len(connections) > after_sync
            # the phone only dials: its gossip does not wait for incoming links
            assert not [r for r in caplog.records if "accept failed" in r.getMessage()]
        finally:
            await phone_gossip.close()
            await board_gossip.close()


def count_adverts(ble: BleTransport) -> list[int]:
    """How many advertisements ``ble``'s radio has heard from now on (a counter
    in a list, updated as they come)."""
    count = [0]
    hooks = ble.radio.hooks
    forward: Callable[[Any], None] = hooks.on_advert

    def heard(sighted: Any) -> None:
        count[0] += 1
        forward(sighted)

    hooks.on_advert = heard
    return count


# ------------------------------------------------------------ a contact cut short


async def contact(board: Node, board_ble: BleTransport, phone: Node, phone_ble: BleTransport
                  ) -> SessionReport:  # fmt: skip
    """The phone dials the board and both run one session; the phone's report."""

    async def session(stream: Any, node: Node, initiator: bool) -> SessionReport:
        channel = await open_channel(stream, node.identity, initiator=initiator,
                                     trust=lambda _peer: None)  # fmt: skip
        return await SyncSession(channel, node.log, node.identity.node_id).run()

    dialled = asyncio.ensure_future(phone_ble.connect(f"ble://{BOARD.node_id}"))
    incoming = await board_ble.accept()
    outgoing = await dialled
    async with asyncio.timeout(60):
        _, report = await asyncio.gather(
            session(incoming, board, initiator=False), session(outgoing, phone, initiator=True)
        )
    return report


def prefix(seqs: list[int]) -> bool:
    """Whole entries continuing the chain from its start: nothing skipped."""
    return seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("budget", [8_000, 20_000, 40_000])
@pytest.mark.slow
async def test_a_contact_cut_short_carried_the_boards_feed_then_acks_then_others_whole(
    tmp_path: Path, budget: int
) -> None:
    async with nodes(tmp_path, BOARD, PHONE) as (board, phone):
        await board.writer.receive_many(signed_feed(OTHER, OTHERS, "readings/other", 200))
        await board.writer.receive_many(signed_feed(CLOUD, ACKS, ACKS_COLLECTION, 40))
        await board.append(OWN, collection="readings/own", size=200)
        # the phone knows the cloud by an acknowledgement of it (its uplink's)
        await phone.writer.receive_many(signed_feed(CLOUD, 1, ACKS_COLLECTION, 40))
        link = make_link()
        hci = local_link(link)
        board_ble = transport(board, hci, scan=False)
        phone_ble = transport(phone, hci, listen=False)
        await board_ble.start()
        await phone_ble.start()
        try:
            cut = OutOfRange(link, board_ble.radio.address, budget)
            first = await contact(board, board_ble, phone, phone_ble)
            assert cut.cut and not first.ok, "the contact ended before the cut"
            own, acks, other = held(phone, BOARD), held(phone, CLOUD), held(phone, OTHER)
            assert prefix(own) and prefix(acks) and prefix(other)
            assert len(own) + len(acks) + len(other) < OWN + ACKS + OTHERS
            assert own, "the board's own readings crossed first"
            if len(acks) > 1:
                assert len(own) == OWN, "acknowledgements only after the board's whole feed"
            if other:
                assert len(acks) == ACKS, "other feeds only after every acknowledgement"
            report = verify_log(phone.reader)
            assert not report.faults and report.entries == len(phone.keys())
            crossed = len(phone.keys()) - 1

            second = await contact(board, board_ble, phone, phone_ble)
            assert second.ok and second.clean
            assert (held(phone, BOARD), held(phone, CLOUD), held(phone, OTHER)) == (
                list(range(1, OWN + 1)), list(range(1, ACKS + 1)), list(range(1, OTHERS + 1))
            )  # fmt: skip
            assert second.entries_received == OWN + ACKS + OTHERS - 1 - crossed
            assert second.duplicates == 0, "the next contact fetched again what had crossed"
            assert not verify_log(phone.reader).faults
        finally:
            await phone_ble.close()
            await board_ble.close()


@pytest.mark.slow
async def test_gossip_dials_again_after_a_contact_cut_mid_sync_and_completes(
    tmp_path: Path,
) -> None:
    """The agent's own path: the phone's gossip dials on the board's sighting,
    the radio drops the link mid-sync, and the phone dials again and completes
    what the first contact began."""
    async with nodes(tmp_path, BOARD, PHONE) as (board, phone):
        await board.append(OWN * 3, collection="readings/own", size=200)
        link = make_link()
        hci = local_link(link)
        board_ble = transport(board, hci, scan=False)
        phone_ble = transport(phone, hci, listen=False)
        config = MeshConfig(live=False)
        board_gossip, _ = gossip_for_node(tmp_path, 0, board, board_ble, [phone], config=config)
        phone_gossip, _ = gossip_for_node(tmp_path, 1, phone, phone_ble, [board], config=config)
        await board_gossip.start()
        cut = OutOfRange(link, board_ble.radio.address, 30_000)
        await phone_gossip.start()
        try:
            await wait_until(lambda: cut.cut and phone_gossip.failed == 1, what="the cut")
            crossed = len(held(phone, BOARD))
            assert 0 < crossed < OWN * 3 and prefix(held(phone, BOARD))
            await wait_until(lambda: len(held(phone, BOARD)) == OWN * 3, timeout=30,
                             what="the rest, by a second contact")  # fmt: skip
            await wait_until(lambda: phone_gossip.completed == 1, what="the second session's end")
            assert not verify_log(phone.reader).faults
        finally:
            await phone_gossip.close()
            await board_gossip.close()


@pytest.mark.slow
async def test_a_phone_back_in_range_dials_at_once_though_its_dials_failed_while_away(
    tmp_path: Path,
) -> None:
    """Cut mid-sync, the board out of range: the phone's dials fail and its
    redials back off. When it hears the board again, that is a new contact: it
    dials then, not when its backoff ends (a board passing by again for a few
    seconds would be missed)."""
    async with nodes(tmp_path, BOARD, PHONE) as (board, phone):
        await board.append(OWN * 3, collection="readings/own", size=200)
        link = make_link()
        hci = local_link(link)
        board_ble = transport(board, hci, scan=False)
        phone_ble = transport(phone, hci, listen=False, connect_timeout=1.0)
        config = MeshConfig(live=False)
        board_gossip, _ = gossip_for_node(tmp_path, 0, board, board_ble, [phone], config=config)
        phone_gossip, _ = gossip_for_node(tmp_path, 1, phone, phone_ble, [board], config=config)
        await board_gossip.start()
        away = OutOfRange(link, board_ble.radio.address, 30_000, stay_away=True)
        await phone_gossip.start()
        try:
            targets = phone_gossip.planner.targets
            address = f"ble://{BOARD.node_id}"
            await wait_until(lambda: address in targets and targets[address].failures >= 4,
                             timeout=60, what="dials failing while the board is away")  # fmt: skip
            # a dial has just failed, the board unheard for more than NEW_CONTACT_S
            backoff_ends = targets[address].next_attempt
            crossed = len(held(phone, BOARD))
            away.back()
            await wait_until(lambda: len(held(phone, BOARD)) > crossed, timeout=60,
                             what="the next contact")  # fmt: skip
            resumed = time.monotonic()
            await wait_until(lambda: len(held(phone, BOARD)) == OWN * 3, timeout=60,
                             what="the rest of the board's feed")  # fmt: skip
            assert resumed < backoff_ends, "the phone waited for its backoff to dial again"
            assert not verify_log(phone.reader).faults
        finally:
            await phone_gossip.close()
            await board_gossip.close()
