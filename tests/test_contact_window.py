"""Contact windows: when a contact is cut short, what crossed first is what matters
most — the peer's own readings, then the clouds' acknowledgements, then other
nodes' feeds — and what crossed is whole, verified entries continuing the chains."""

from __future__ import annotations

import pytest

from agent.entry import Entry, entry_hash, sign_entry
from agent.identity import Identity
from agent.sync import MemoryLog, ReferenceNode
from agent.sync.reference import ReferenceSession

# keys sort OTHER < CLOUD < BOARD: an offer (feeds in key order) lists the board's own last
BOARD, CLOUD, OTHER, PHONE = (Identity(bytes([n]) * 32) for n in (9, 2, 8, 4))


def feed(identity: Identity, n: int, collection: str, size: int = 200) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, n + 1):
        prev = entry_hash(entries[-1].raw) if entries else None
        entries.append(
            sign_entry(
                identity,
                seq=seq,
                prev=prev,
                ts=1_700_000_000_000 + seq,
                collection=collection,
                body={"i": seq, "pad": "x" * size},
            )
        )
    return entries


def board_log() -> MemoryLog:
    """A board holding another node's feed, a cloud's acknowledgements and its own
    readings — the other feed and the cloud sort before the board's own by key."""
    return MemoryLog(
        feed(OTHER, 40, "readings/other")
        + feed(CLOUD, 10, "_acks", size=40)
        + feed(BOARD, 60, "readings/own")
    )


def contact(phone: ReferenceSession, board: ReferenceSession, budget: int) -> None:
    """Run both sessions until the board has sent ``budget`` bytes; then the link
    drops (the phone walked away)."""
    to_board, to_phone = phone.start(), board.start()
    sent = 0
    while to_board or to_phone:
        if sent + len(to_phone) >= budget:
            phone.receive(to_phone[: budget - sent])
            phone.receive(b"")
            return
        sent += len(to_phone)
        reply = phone.receive(to_phone) if to_phone else b""
        to_phone = board.receive(to_board) if to_board else b""
        to_board = reply


def held(log: MemoryLog, identity: Identity) -> list[int]:
    keys = log.keys()  # a set of (author, seq)
    return sorted(seq for author, seq in keys if author == identity.node_id.key)


@pytest.mark.parametrize("budget", [3_000, 8_000, 15_000, 20_000, 100_000])
def test_a_short_contact_carries_the_boards_own_feed_then_acks_then_others(budget: int) -> None:
    phone_node = ReferenceNode(PHONE.node_id.key, clouds=frozenset({CLOUD.node_id.key}))
    board_node = ReferenceNode(BOARD.node_id.key, board_log())
    phone = phone_node.session(BOARD.node_id.key)
    contact(phone, board_node.session(PHONE.node_id.key), budget)
    log = phone_node.log
    own, acks, other = held(log, BOARD), held(log, CLOUD), held(log, OTHER)
    for seqs in (own, acks, other):  # whole entries, each chain a prefix: verifiable
        assert seqs == list(range(1, len(seqs) + 1))
    assert own, "the board's own readings crossed first"
    if acks:
        assert len(own) == 60, "acknowledgements only after the board's whole feed"
    if other:
        assert len(acks) == 10, "other feeds only after every acknowledgement"
    if budget == 100_000:
        assert (len(own), len(acks), len(other)) == (60, 10, 40)


def test_a_phone_that_knows_no_cloud_still_takes_the_boards_own_feed_first() -> None:
    """The board's offer lists feeds by key, its own last: wanting in offer order
    would leave a short contact with other nodes' feeds and none of the board's
    readings. Without known clouds the rest keeps the offer's order."""
    assert sorted(i.node_id.key for i in (BOARD, CLOUD, OTHER))[-1] == BOARD.node_id.key
    board_node = ReferenceNode(BOARD.node_id.key, board_log())
    phone_node = ReferenceNode(PHONE.node_id.key)
    phone = phone_node.session(BOARD.node_id.key)
    contact(phone, board_node.session(PHONE.node_id.key), 8_000)
    assert held(phone_node.log, BOARD) and not held(phone_node.log, CLOUD)
    phone_node = ReferenceNode(PHONE.node_id.key)
    phone = phone_node.session(BOARD.node_id.key)
    contact(phone, board_node.session(PHONE.node_id.key), 40_000)
    assert len(held(phone_node.log, BOARD)) == 60 and held(phone_node.log, OTHER)
