"""Hostile peers against an honest node's sync driver, played at the sans-IO level.

The honest side is the driver every node runs (in its in-memory shell); the
hostile side is a bare SyncConnection (or raw bytes, where it breaks the
framing). Whatever it does, the honest node ends with a clear reason — a
protocol error answered with ERROR, or an entry its policy refuses counted —
and its log holds exactly what it held before."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import cbor2
import pytest

from agent.entry import DEFAULT_MAX_ENTRY_SIZE, Entry, decode_entry, sign_entry, verify_entry
from agent.errors import BadSignature, ForkError, LocalProtocolError, RemoteProtocolError
from agent.identity import Identity
from agent.sync import (
    DEFAULT_WINDOW,
    MAX_CREDIT,
    ConnectionClosed,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    FrameReader,
    Have,
    HaveEnd,
    Hello,
    MemoryLog,
    Message,
    ReferenceNode,
    SaveCheckpoint,
    Send,
    State,
    Store,
    SyncConnection,
    SyncDriver,
    Want,
    WantEnd,
    decode_message,
    frame_message,
    max_frame_for,
    perform_read,
)
from agent.sync.wire import uvarint

ALICE, CAROL = Identity(b"\x01" * 32), Identity(b"\x03" * 32)
HONEST = Identity(b"\x10" * 32).node_id.key
MALLORY = Identity(b"\x20" * 32).node_id.key
MAX_FRAME = max_frame_for(DEFAULT_MAX_ENTRY_SIZE)


@functools.cache
def feed(identity: Identity, count: int, fork_at: int = 0) -> tuple[Entry, ...]:
    """A valid chain; from ``fork_at`` on, its bodies differ (a second, forked chain)."""
    out: list[Entry] = []
    for seq in range(1, count + 1):
        body = f"fork {seq}" if fork_at and seq >= fork_at else f"entry {seq}"
        prev = out[-1].hash if out else None
        out.append(sign_entry(identity, seq=seq, prev=prev, ts=seq * 10, collection="c", body=body))
    return tuple(out)


@dataclass
class RefuseAuthor:
    """An access policy that lets ``author`` write nothing."""

    author: bytes

    def may_read(self, peer: bytes, collection: str) -> bool:
        return True

    def may_write(self, author: bytes, collection: str, seq: int) -> bool:
        return author != self.author


class Hostile:
    """The hostile side of a session with an honest :class:`ReferenceNode`."""

    def __init__(self, node: ReferenceNode) -> None:
        self.node = node
        self.before = node.log.keys()
        self.honest = node.session(MALLORY)
        self.conn = SyncConnection()
        self.reader = FrameReader(MAX_FRAME)
        self.heard: list[Message] = []  # everything the honest node said, in order
        self.produced = 0  # bytes the honest node produced
        self._hear(self.honest.start())

    def _hear(self, data: bytes) -> None:
        self.produced += len(data)
        if not data:
            return
        self.reader.feed(data)
        while (body := self.reader.next_frame()) is not None:
            self.heard.append(decode_message(body))
        try:  # keep our connection's view of the honest side, as long as it agrees
            self.conn.receive_data(data)
            list(self.conn.events())
        except RemoteProtocolError:
            pass

    def raw(self, data: bytes) -> None:
        self._hear(self.honest.receive(data))

    def say(self, *messages: Message) -> None:
        self.conn.send_all(messages)
        self.raw(self.conn.data_to_send())

    def hello(self, credit: Credit | None = DEFAULT_WINDOW) -> None:
        self.say(Hello(node=MALLORY, role="mule"), *([credit] if credit else []))

    def assert_log_unchanged(self) -> None:
        assert self.node.log.keys() == self.before

    def assert_failed(self, reason: str) -> None:
        """The honest node found a protocol error with ``reason`` and said ERROR."""
        assert self.honest.stats.protocol_error, self.honest.stats
        assert self.honest.error is not None and reason in self.honest.error
        last = self.heard[-1]
        assert isinstance(last, ErrorMessage) and reason in last.reason
        assert self.honest.finished
        self.assert_log_unchanged()
        assert self.honest.receive(b"more bytes") == b""  # nothing more is read


def honest(*entries: Entry, **kwargs: object) -> ReferenceNode:
    return ReferenceNode(HONEST, MemoryLog(entries), **kwargs)  # type: ignore[arg-type]


def raw_frame(value: object) -> bytes:
    body = cbor2.dumps(value, canonical=True)
    return uvarint(len(body)) + body


def test_wrong_protocol_version() -> None:
    peer = Hostile(honest(*feed(ALICE, 3)))
    peer.raw(raw_frame([0, 2, MALLORY, "mule", 0, 0]))
    peer.assert_failed("the peer speaks sync protocol version 2; this node speaks version 1")


def test_hello_naming_another_node() -> None:
    peer = Hostile(honest(*feed(ALICE, 3)))
    peer.say(Hello(node=HONEST, role="board"))
    peer.assert_failed("HELLO names a node other than the channel's peer")


def test_truncated_frame_then_end_of_stream() -> None:
    peer = Hostile(honest(*feed(ALICE, 3)))
    peer.hello()
    frame = frame_message(Have(author=CAROL.node_id.key, from_seq=1, to_seq=4))
    peer.raw(frame[:20])
    assert peer.honest.error is None  # it waits for the rest
    peer.raw(b"")
    peer.assert_failed(f"truncated frame: the stream ended after 19 of its {len(frame) - 1} bytes")


def offer_carol(peer: Hostile, count: int = 1) -> None:
    """The hostile side offers Carol's feed 1..count; the honest side wants all of it."""
    carol = CAROL.node_id.key
    peer.say(Have(author=carol, from_seq=1, to_seq=count), HaveEnd(change=count))
    assert Want(author=carol, from_seq=1, to_seq=count) in peer.heard
    assert peer.conn.our_state is State.SENDING


def test_forged_signature_ends_the_session_and_is_not_stored() -> None:
    peer = Hostile(honest(*feed(ALICE, 3)))
    peer.hello()
    offer_carol(peer)
    raw = bytearray(feed(CAROL, 1)[0].raw)
    raw[-1] ^= 0x01  # one bit of the signature
    forged = decode_entry(bytes(raw))  # well-formed: only the signature is wrong
    with pytest.raises(BadSignature):
        verify_entry(forged)
    peer.say(EntryData(entry=forged), Done(change=1))
    stats = peer.honest.stats
    assert (stats.entries_received, stats.entries_stored) == (1, 0)
    peer.assert_failed(f"bad entry {forged.where}: signature")
    assert [m for m in peer.heard if isinstance(m, Credit)] == [DEFAULT_WINDOW]  # none after it


def test_author_the_policy_refuses_is_not_stored_and_the_session_goes_on() -> None:
    carol = CAROL.node_id.key
    peer = Hostile(honest(*feed(ALICE, 3), policy=RefuseAuthor(carol)))
    peer.hello()
    offer_carol(peer, 2)
    peer.say(*(EntryData(entry=e) for e in feed(CAROL, 2)), Done(change=2))
    stats = peer.honest.stats
    assert (stats.entries_refused, stats.entries_stored) == (2, 0)
    assert peer.honest.error is None and not peer.honest.finished
    credit = [m for m in peer.heard if isinstance(m, Credit)][-1]  # the refused entries' credit
    assert credit.entries == 2 and credit.bytes == sum(len(e.raw) for e in feed(CAROL, 2))
    assert all(peer.honest.log.get(carol, seq) is None for seq in (1, 2))
    peer.assert_log_unchanged()
    assert peer.honest.node.checkpoints[MALLORY] == 2  # the round is done: not offered again


def test_fork_at_a_held_seq_is_seen_and_never_asked_for() -> None:
    alice = ALICE.node_id.key
    peer = Hostile(honest(*feed(ALICE, 3)))
    peer.hello()
    forked = feed(ALICE, 3, fork_at=3)[2]
    peer.say(Have(author=alice, from_seq=1, to_seq=3, head_hash=forked.hash), HaveEnd(change=3))
    assert peer.honest.stats.forks_seen == 1
    assert not any(isinstance(m, Want) for m in peer.heard)  # it holds 1..3: wants nothing
    peer.raw(frame_message(EntryData(entry=forked)))  # pushed anyway
    peer.assert_failed("ENTRY not wanted")


def test_forked_successor_ends_the_session_and_is_not_stored() -> None:
    alice = ALICE.node_id.key
    peer = Hostile(honest(*feed(ALICE, 2)))
    peer.hello()
    forked = feed(ALICE, 3, fork_at=2)  # 2' and 3' follow the fork; 3'.prev is not 2's hash
    peer.say(Have(author=alice, from_seq=1, to_seq=3), HaveEnd(change=3))
    assert Want(author=alice, from_seq=3, to_seq=3) in peer.heard
    with pytest.raises(ForkError):
        MemoryLog(feed(ALICE, 2)).add(forked[2])
    peer.say(EntryData(entry=forked[2]), Done(change=3))
    assert peer.honest.log.get(alice, 3) is None
    peer.assert_failed(f"bad entry {forked[2].where}: fork")
    assert MALLORY not in peer.honest.node.checkpoints  # its round did not count


def test_entry_beyond_the_granted_credit() -> None:
    node = honest(*feed(ALICE, 1), window=Credit(entries=1, bytes=DEFAULT_MAX_ENTRY_SIZE))
    peer = Hostile(node)
    peer.hello()
    offer_carol(peer, 3)
    entries = feed(CAROL, 3)
    # Two entries in one flight: the first spends the only credit, the second has none
    # (the honest side returns credit after it has read what arrived, not before).
    peer.raw(
        frame_message(EntryData(entry=entries[0])) + frame_message(EntryData(entry=entries[1]))
    )
    assert node.log.get(CAROL.node_id.key, 1) == entries[0]  # within credit: kept
    peer.before |= {(CAROL.node_id.key, 1)}
    peer.assert_failed("ENTRY beyond credit")


@pytest.mark.parametrize("seed", range(8))
def test_endless_garbage_fails_fast_with_bounded_buffering(seed: int) -> None:
    rnd = random.Random(seed)
    peer = Hostile(honest(*feed(ALICE, 3)))
    fed = 0
    while peer.honest.error is None:
        chunk = rnd.randbytes(1024)
        peer.raw(chunk)
        fed += len(chunk)
        assert fed <= MAX_FRAME + 1024 + 3, "garbage was buffered past one frame"
    peer.assert_failed(str(peer.honest.error)[:40])


def test_frame_reader_refuses_an_oversized_prefix_before_buffering() -> None:
    reader = FrameReader(MAX_FRAME)
    reader.feed(uvarint(MAX_FRAME + 1))
    with pytest.raises(RemoteProtocolError, match=f"oversized frame: {MAX_FRAME + 1} bytes"):
        reader.next_frame()
    reader = FrameReader(MAX_FRAME)
    reader.feed(b"\xff" * 3)  # a prefix already longer than any allowed length
    with pytest.raises(RemoteProtocolError, match="length prefix is longer than 3 bytes"):
        reader.next_frame()
    peer = Hostile(honest(*feed(ALICE, 3)))
    peer.raw(b"\xff" * 1_000)
    peer.assert_failed("oversized frame")


def test_peer_that_never_grants_credit_gets_nothing() -> None:
    entries = feed(ALICE, 50)
    peer = Hostile(honest(*entries))
    peer.hello(credit=None)  # grants nothing, ever
    assert peer.conn.their_state is State.AWAIT_WANTS  # the honest side offered its log
    peer.say(Want(author=ALICE.node_id.key, from_seq=1, to_seq=50), WantEnd())
    assert peer.honest.conn.our_state is State.SENDING
    assert peer.honest.conn.send_credit == (0, 0)
    assert not any(isinstance(m, EntryData) for m in peer.heard)
    produced = peer.produced
    for _ in range(100):  # pokes and further traffic produce nothing more
        peer._hear(peer.honest.poke())
    assert peer.produced == produced
    with pytest.raises(LocalProtocolError, match="ENTRY beyond credit"):
        peer.honest.conn.send(EntryData(entry=entries[0]))
    peer.raw(b"")  # it leaves
    assert peer.honest.ended == ConnectionClosed(clean=False)
    peer.assert_log_unchanged()


def test_peer_that_stops_reading_gets_only_its_credit() -> None:
    entries = feed(ALICE, 50)
    size = len(entries[0].raw)
    peer = Hostile(honest(*entries))
    peer.hello(credit=Credit(entries=3, bytes=1 << 20))
    peer.say(Want(author=ALICE.node_id.key, from_seq=1, to_seq=50), WantEnd())
    sent = [m for m in peer.heard if isinstance(m, EntryData)]
    assert [m.entry.seq for m in sent] == [1, 2, 3]
    produced = peer.produced
    assert produced < 3 * (size + 10) + 400  # HELLO, CREDIT, HAVE, HAVE_END, WANT_END, 3 entries
    for _ in range(100):
        peer._hear(peer.honest.poke())
    assert peer.produced == produced
    assert peer.honest.conn.send_credit[0] == 0 and not peer.honest.conn.can_send_entry(1)
    assert peer.honest.stats.entries_sent == 3
    peer.assert_log_unchanged()


def test_peer_error_ends_the_session() -> None:
    entries = feed(ALICE, 50)
    peer = Hostile(honest(*entries))
    peer.hello(credit=Credit(entries=2, bytes=1 << 20))
    peer.say(Want(author=ALICE.node_id.key, from_seq=1, to_seq=50), WantEnd())
    heard = len(peer.heard)
    peer.say(ErrorMessage(reason="giving up"))
    assert peer.honest.peer_error == "giving up"
    assert peer.honest.finished  # it sends nothing more: no entries, no BYE
    assert peer.honest.poke() == peer.honest.close() == b""
    peer.raw(frame_message(Credit(entries=5, bytes=1 << 20)))  # anything after ERROR
    assert not any(isinstance(m, EntryData) for m in peer.heard[heard:])
    assert peer.honest.stats.entries_sent == 2
    peer.assert_log_unchanged()


def unacknowledged(driver: SyncDriver, log: MemoryLog) -> bytes:
    """Run ``driver``'s commands like a shell whose link takes nothing: the bytes it
    hands out are never reported sent."""
    out = []
    while (command := driver.next_command()) is not None:
        if isinstance(command, Send):
            out.append(command.data)
        elif not isinstance(command, Store | SaveCheckpoint):
            driver.read_done(perform_read(log, command))
    return b"".join(out)


def test_a_peer_that_never_reads_is_sent_no_more_than_the_unsent_bound() -> None:
    entries = feed(ALICE, 3000)
    log = MemoryLog(entries)
    bound = 64 * 1024
    driver = SyncDriver(HONEST, MALLORY, max_unsent=bound)
    driver.start(checkpoint=0, last_change=log.last_change)
    hostile = SyncConnection()
    # all the credit there is, and every entry, without reading a byte of the answers
    hostile.send_all(
        [Hello(node=MALLORY, role="mule"), Credit(entries=MAX_CREDIT, bytes=MAX_CREDIT)]
    )
    driver.receive_data(
        hostile.data_to_send()
        + frame_message(Want(author=ALICE.node_id.key, from_seq=1, to_seq=3000))
        + frame_message(WantEnd())
    )
    produced = len(unacknowledged(driver, log))
    assert bound <= produced <= bound + MAX_FRAME
    assert driver.stats.entries_sent < 3000 and driver.conn.our_state is State.SENDING
    for change in range(1, 50):  # more rounds of the peer's: nothing more goes out
        driver.receive_data(
            frame_message(Have(author=CAROL.node_id.key, from_seq=1, to_seq=change))
            + frame_message(HaveEnd(change=change))
        )
        produced += len(unacknowledged(driver, log))
        if driver.finished:
            break
    assert produced <= bound + MAX_FRAME + 200  # at most an ERROR more
    # its next round began before our WANT_END could go out: the peer broke the order
    assert driver.stats.protocol_error and "HAVE out of order" in (driver.stats.error or "")
