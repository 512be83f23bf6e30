"""SyncConnection's rules: message order (the state tables), HELLO version,
ranges offered and wanted, entry order and credit — each enforced on what we
send (LocalProtocolError, nothing changes) and on what the peer sends
(RemoteProtocolError naming the problem, then only ERROR may follow)."""

from __future__ import annotations

import functools
import re

import cbor2
import pytest

from agent.entry import Entry, sign_entry
from agent.errors import LocalProtocolError, RemoteProtocolError
from agent.identity import Identity
from agent.sync import (
    DEFAULT_WINDOW,
    MAX_CREDIT,
    NEED_DATA,
    PROTOCOL_VERSION,
    Bye,
    ConnectionClosed,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    Event,
    Have,
    HaveEnd,
    Hello,
    Live,
    Message,
    State,
    SyncConnection,
    Want,
    WantEnd,
    frame_message,
)
from agent.sync.wire import uvarint

ALICE = Identity(b"\x01" * 32)
BOB = Identity(b"\x02" * 32)
A, B = ALICE.node_id.key, BOB.node_id.key


@functools.cache
def feed(identity: Identity, count: int) -> tuple[Entry, ...]:
    out: list[Entry] = []
    for seq in range(1, count + 1):
        prev = out[-1].hash if out else None
        out.append(
            sign_entry(identity, seq=seq, prev=prev, ts=seq * 1000, collection="c", body=seq)
        )
    return tuple(out)


def receive(conn: SyncConnection, *messages: Message) -> list[Event]:
    """Feed ``messages`` as the peer's frames, unchecked; every event they give."""
    conn.receive_data(b"".join(frame_message(m) for m in messages))
    return list(conn.events())


def refused(conn: SyncConnection, message: Message, problem: str) -> None:
    """``message`` from the peer is refused with ``problem``, and the connection stays failed."""
    with pytest.raises(RemoteProtocolError, match=re.escape(problem)):
        receive(conn, message)
    assert conn.their_state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="ERROR state"):
        conn.next_event()
    with pytest.raises(LocalProtocolError, match="only ERROR may follow"):
        conn.send(Bye())
    conn.send(ErrorMessage(reason=problem))


def hello(node: bytes = B, **fields: int) -> Hello:
    return Hello(node=node, role="board", **fields)


def started() -> SyncConnection:
    """A connection after both HELLOs and initial credit each way."""
    conn = SyncConnection()
    conn.send_all([hello(A), DEFAULT_WINDOW])
    assert [type(e) for e in receive(conn, hello(), DEFAULT_WINDOW)] == [Hello, Credit]
    return conn


def peer_offering(conn: SyncConnection, *haves: Have, change: int = 5) -> None:
    """The peer offers ``haves``; we answer with no WANT yet."""
    receive(conn, *haves, HaveEnd(change=change))
    assert conn.their_state is State.AWAIT_WANTS


def we_stream(conn: SyncConnection, *wants: Want, change: int = 5) -> None:
    """We offered feed A 1..10; the peer wants ``wants``: we are SENDING."""
    conn.send_all([Have(author=A, from_seq=1, to_seq=10), HaveEnd(change=change)])
    receive(conn, *wants, WantEnd())
    assert conn.our_state is State.SENDING


# ------------------------------------------------------------------ order


def test_nothing_but_hello_comes_first() -> None:
    for message in (Have(author=A, from_seq=1, to_seq=2), DEFAULT_WINDOW, Bye(), Live()):
        conn = SyncConnection()
        with pytest.raises(LocalProtocolError, match="before HELLO"):
            conn.send(message)
        assert conn.our_state is State.START and conn.bytes_sent == 0
        refused(SyncConnection(), message, f"{message.NAME} before HELLO")


def test_hello_twice_and_the_peers_hello_is_kept() -> None:
    conn = started()
    assert conn.peer_hello == hello()
    with pytest.raises(LocalProtocolError, match="HELLO sent twice"):
        conn.send(hello(A))
    refused(conn, hello(), "HELLO sent twice")


def test_hello_of_another_version_names_it() -> None:
    conn = SyncConnection()
    body = cbor2.dumps([0, 7, B, "board", 0, 0], canonical=True)
    conn.receive_data(uvarint(len(body)) + body)
    with pytest.raises(RemoteProtocolError, match="version 7; this node speaks version 1"):
        conn.next_event()
    assert conn.their_state is State.ERROR
    with pytest.raises(LocalProtocolError, match=f"speaks version {PROTOCOL_VERSION} only"):
        SyncConnection().send(Hello(node=A, role="board", version=2))


def test_a_new_offer_waits_for_done() -> None:
    conn = started()
    conn.send_all([Have(author=A, from_seq=1, to_seq=3), HaveEnd(change=3)])
    with pytest.raises(LocalProtocolError, match="a new offer starts only after DONE"):
        conn.send(Have(author=A, from_seq=4, to_seq=5))
    with pytest.raises(LocalProtocolError, match="HAVE_END out of order"):
        conn.send(HaveEnd(change=3))
    assert conn.our_state is State.AWAIT_WANTS
    peer = started()
    receive(peer, Have(author=A, from_seq=1, to_seq=3), HaveEnd(change=3))
    refused(peer, HaveEnd(change=4), "HAVE_END out of order")


def test_want_answers_only_an_offer_that_ended() -> None:
    conn = started()
    refused(conn, Want(author=A, from_seq=1, to_seq=1), "WANT out of order")
    conn = started()
    conn.send(Have(author=A, from_seq=1, to_seq=3))
    refused(conn, Want(author=A, from_seq=1, to_seq=1), "before HAVE_END")
    conn = started()
    we_stream(conn)
    refused(conn, WantEnd(), "WANT_END out of order: sent after WANT_END")


def test_entry_and_done_only_while_sending() -> None:
    conn = started()
    with pytest.raises(LocalProtocolError, match="ENTRY out of order"):
        conn.send(EntryData(entry=feed(ALICE, 1)[0]))
    with pytest.raises(LocalProtocolError, match="DONE out of order"):
        conn.send(Done(change=0))
    refused(conn, EntryData(entry=feed(BOB, 1)[0]), "ENTRY out of order")


def test_live_twice_and_after_bye() -> None:
    conn = started()
    conn.send(Live())
    with pytest.raises(LocalProtocolError, match="LIVE sent twice"):
        conn.send(Live())
    receive(conn, Live())
    assert [conn.peer_live] == [True]
    receive(conn, Bye(reason="done"))
    assert [conn.peer_live] == [False]
    refused(conn, Live(), "LIVE after BYE")


def test_after_bye_a_side_only_answers() -> None:
    conn = started()
    receive(conn, Bye(reason="done"))
    refused(conn, Have(author=B, from_seq=1, to_seq=1), "HAVE after BYE")
    conn = started()
    receive(conn, Bye())
    conn.send_all([Have(author=A, from_seq=1, to_seq=2), HaveEnd(change=2)])
    events = receive(conn, Want(author=A, from_seq=2, to_seq=2), WantEnd(), DEFAULT_WINDOW)
    assert [type(e) for e in events] == [Want, WantEnd, Credit]
    assert conn.our_state is State.SENDING
    conn.send_all([EntryData(entry=feed(ALICE, 2)[1]), Done(change=2), Bye()])
    assert conn.closed
    assert list(conn.events()) == []
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(clean=True)
    assert conn.next_event() == ConnectionClosed(clean=True)  # again and again


def test_bye_crossing_wants_leaves_them_ignored() -> None:
    conn = started()
    conn.send_all([Have(author=A, from_seq=1, to_seq=2), HaveEnd(change=2), Bye()])
    receive(conn, Want(author=A, from_seq=1, to_seq=2), WantEnd())
    assert conn.our_state is State.CLOSED and conn.their_wants == ()
    with pytest.raises(LocalProtocolError, match="ENTRY after BYE"):
        conn.send(EntryData(entry=feed(ALICE, 1)[0]))


def test_stream_end_without_bye_is_unclean() -> None:
    conn = started()
    conn.receive_data(b"")
    assert list(conn.events()) == [ConnectionClosed(clean=False)]
    with pytest.raises(LocalProtocolError, match="after the end of the stream"):
        conn.receive_data(b"x")


def test_error_is_allowed_anywhere_but_after_error() -> None:
    conn = SyncConnection()
    conn.send(ErrorMessage(reason="no"))
    with pytest.raises(LocalProtocolError, match="ERROR after ERROR"):
        conn.send(ErrorMessage(reason="again"))
    peer = started()
    assert receive(peer, ErrorMessage(reason="bad")) == [ErrorMessage(reason="bad")]
    refused(peer, ErrorMessage(reason="again"), "ERROR after ERROR")


def test_need_data_until_a_whole_frame() -> None:
    conn = SyncConnection()
    data = frame_message(hello())
    for byte in data[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(data[-1:])
    assert conn.next_event() == hello()
    assert conn.bytes_received == len(data) - 1  # frame bodies, not prefixes


# ------------------------------------------------------------------ ranges


def test_haves_of_a_feed_must_ascend_and_touching_ranges_merge() -> None:
    conn = started()
    conn.send_all([Have(author=A, from_seq=1, to_seq=3), Have(author=A, from_seq=4, to_seq=6)])
    with pytest.raises(LocalProtocolError, match="overlaps or precedes an earlier HAVE"):
        conn.send(Have(author=A, from_seq=6, to_seq=9))
    conn.send_all([Have(author=B, from_seq=9, to_seq=9), HaveEnd(change=3)])
    receive(conn, Want(author=A, from_seq=2, to_seq=5), WantEnd())  # spans the merged ranges
    peer = started()
    receive(peer, Have(author=B, from_seq=5, to_seq=9))
    refused(peer, Have(author=B, from_seq=1, to_seq=4), "overlaps or precedes")


def test_wants_must_be_offered_and_ascend() -> None:
    conn = started()
    peer_offering(conn, Have(author=B, from_seq=1, to_seq=5), Have(author=B, from_seq=8, to_seq=9))
    for bad in (
        Want(author=B, from_seq=5, to_seq=8),  # crosses the gap
        Want(author=B, from_seq=10, to_seq=10),
        Want(author=A, from_seq=1, to_seq=1),  # a feed never offered
    ):
        with pytest.raises(LocalProtocolError, match="was not offered"):
            conn.send(bad)
    conn.send(Want(author=B, from_seq=3, to_seq=4))
    with pytest.raises(LocalProtocolError, match="overlaps or precedes an earlier WANT"):
        conn.send(Want(author=B, from_seq=2, to_seq=2))
    conn.send_all([Want(author=B, from_seq=8, to_seq=9), WantEnd()])
    assert conn.our_wants == (
        Want(author=B, from_seq=3, to_seq=4),
        Want(author=B, from_seq=8, to_seq=9),
    )
    conn = started()
    conn.send_all([Have(author=A, from_seq=1, to_seq=3), HaveEnd(change=3)])
    refused(conn, Want(author=A, from_seq=1, to_seq=4), "WANT lc1")


def test_too_many_ranges_in_one_round() -> None:
    conn = SyncConnection(max_ranges=2)
    conn.send_all([hello(A)])
    receive(
        conn, hello(), Have(author=B, from_seq=1, to_seq=1), Have(author=B, from_seq=3, to_seq=3)
    )
    refused(conn, Have(author=B, from_seq=5, to_seq=5), "more than 2 HAVE ranges")


def test_change_counters_never_go_back() -> None:
    conn = started()
    we_stream(conn, change=7)
    with pytest.raises(LocalProtocolError, match="differs from the round's HAVE_END change 7"):
        conn.send(Done(change=6))
    conn.send(Done(change=7))
    assert conn.our_state is State.IDLE
    conn.send(Have(author=A, from_seq=11, to_seq=11))
    with pytest.raises(LocalProtocolError, match="below the previous round's 7"):
        conn.send(HaveEnd(change=6))
    conn.send(HaveEnd(change=7))  # an equal counter is fine: nothing changed


# ------------------------------------------------------------------ entries


def test_entries_follow_want_order_and_may_skip_but_not_go_back() -> None:
    entries = feed(ALICE, 6)
    conn = started()
    we_stream(conn, Want(author=A, from_seq=2, to_seq=3), Want(author=A, from_seq=5, to_seq=6))
    conn.send(EntryData(entry=entries[2]))  # seq 3: seq 2 skipped (the provider lacks it)
    with pytest.raises(LocalProtocolError, match="ENTRY not wanted"):
        conn.send(EntryData(entry=entries[1]))  # going back
    with pytest.raises(LocalProtocolError, match="ENTRY not wanted"):
        conn.send(EntryData(entry=entries[3]))  # seq 4 was never wanted
    conn.send(EntryData(entry=entries[5]))
    with pytest.raises(LocalProtocolError, match="ENTRY not wanted"):
        conn.send(EntryData(entry=entries[5]))  # twice
    assert conn.their_wants == ()
    conn.send(Done(change=5))


def test_peer_entry_out_of_order_is_refused() -> None:
    entries = feed(BOB, 4)
    conn = started()
    peer_offering(conn, Have(author=B, from_seq=1, to_seq=4))
    conn.send_all([Want(author=B, from_seq=1, to_seq=4), WantEnd()])
    assert receive(conn, EntryData(entry=entries[0]), EntryData(entry=entries[2]))
    assert conn.our_wants == (Want(author=B, from_seq=1, to_seq=4),)
    refused(conn, EntryData(entry=entries[1]), "ENTRY not wanted: ")


def test_entry_of_another_feed_than_wanted_is_refused() -> None:
    conn = started()
    peer_offering(conn, Have(author=B, from_seq=1, to_seq=4))
    conn.send_all([Want(author=B, from_seq=1, to_seq=1), WantEnd()])
    refused(conn, EntryData(entry=feed(ALICE, 1)[0]), "is not in a wanted range")


def test_done_ends_the_round_and_a_new_round_may_follow() -> None:
    conn = started()
    peer_offering(conn, Have(author=B, from_seq=1, to_seq=1), change=1)
    conn.send_all([Want(author=B, from_seq=1, to_seq=1), WantEnd()])
    refused(conn, Done(change=2), "DONE change 2 differs")
    conn = started()
    peer_offering(conn, Have(author=B, from_seq=1, to_seq=1), change=1)
    conn.send(WantEnd())
    assert [type(e) for e in receive(conn, Done(change=1), HaveEnd(change=1))] == [Done, HaveEnd]


# ------------------------------------------------------------------ credit


def test_entries_spend_credit_and_stop_when_it_is_gone() -> None:
    entries = feed(ALICE, 4)
    conn = SyncConnection()
    conn.send(hello(A))
    size = len(entries[0].raw)
    receive(conn, hello(), Credit(entries=2, bytes=10 * size))
    we_stream(conn, Want(author=A, from_seq=1, to_seq=4))
    assert conn.send_credit == (2, 10 * size)
    conn.send_all([EntryData(entry=entries[0]), EntryData(entry=entries[1])])
    assert conn.send_credit == (0, 10 * size - len(entries[0].raw) - len(entries[1].raw))
    assert not conn.can_send_entry(1)
    with pytest.raises(LocalProtocolError, match="ENTRY beyond credit: an entry of"):
        conn.send(EntryData(entry=entries[2]))
    assert conn.their_wants[0].from_seq == 1 and conn.send_credit[0] == 0  # nothing changed
    receive(conn, Credit(entries=1, bytes=1))  # credit returns; adds to what is left
    assert conn.can_send_entry(len(entries[2].raw))
    conn.send(EntryData(entry=entries[2]))


def test_byte_credit_is_enforced_too() -> None:
    entry = feed(ALICE, 1)[0]
    conn = SyncConnection()
    conn.send(hello(A))
    receive(conn, hello(), Credit(entries=100, bytes=len(entry.raw) - 1))
    we_stream(conn, Want(author=A, from_seq=1, to_seq=1))
    assert not conn.can_send_entry(len(entry.raw))
    with pytest.raises(LocalProtocolError, match="beyond credit"):
        conn.send(EntryData(entry=entry))


def test_peer_entry_beyond_credit_is_refused() -> None:
    entries = feed(BOB, 3)
    conn = SyncConnection()
    conn.send_all([hello(A), Credit(entries=1, bytes=4096)])
    receive(conn, hello())
    peer_offering(conn, Have(author=B, from_seq=1, to_seq=3))
    conn.send_all([Want(author=B, from_seq=1, to_seq=3), WantEnd()])
    receive(conn, EntryData(entry=entries[0]))
    assert conn.receive_credit == (0, 4096 - len(entries[0].raw))
    refused(conn, EntryData(entry=entries[1]), "ENTRY beyond credit")


def test_credit_outstanding_is_capped() -> None:
    conn = started()
    refused(conn, Credit(entries=MAX_CREDIT, bytes=0), "CREDIT overflow")
    conn = started()
    with pytest.raises(LocalProtocolError, match="CREDIT overflow"):
        conn.send(Credit(entries=0, bytes=MAX_CREDIT))
    assert conn.receive_credit == (DEFAULT_WINDOW.entries, DEFAULT_WINDOW.bytes)
