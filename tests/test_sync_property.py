"""Two reference nodes with arbitrary overlapping logs always converge on the union.

Whatever the order in which the two byte streams are delivered, however they
are cut (down to one byte at a time), and wherever a session is cut off
(the next session resumes from the checkpoints kept): both logs end with
every entry either held, no entry is received twice in a session, and no
entry the receiver already held is ever sent to it. A repeat sync after
that costs a handful of bytes, and live sessions replicate entries appended
while they run."""

from __future__ import annotations

import functools
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.entry import Entry, sign_entry
from agent.identity import Identity
from agent.sync import MemoryLog, ReferenceNode, ReferenceSession

AUTHORS = tuple(Identity(bytes([0x40 + i]) * 32) for i in range(3))
HELD = 6  # seqs 1..HELD of each feed may be held at the start
EXTRA = 3  # seqs HELD+1..HELD+EXTRA are appended while live sessions run

Key = tuple[int, int]  # (author index, seq)


@functools.cache
def pool(author: int) -> tuple[Entry, ...]:
    """Feed ``author``: a valid chain of HELD + EXTRA entries."""
    out: list[Entry] = []
    for seq in range(1, HELD + EXTRA + 1):
        out.append(
            sign_entry(
                AUTHORS[author],
                seq=seq,
                prev=out[-1].hash if out else None,
                ts=seq * 1000,
                collection=f"readings/n{author}",
                body={"seq": seq, "pad": "x" * (seq * 7)},
            )
        )
    return tuple(out)


def entry(key: Key) -> Entry:
    return pool(key[0])[key[1] - 1]


def log_of(keys: set[Key]) -> MemoryLog:
    return MemoryLog(entry(k) for k in sorted(keys))


def key_set(log: MemoryLog) -> set[tuple[bytes, int]]:
    return log.keys()


holdings = st.sets(st.tuples(st.integers(0, len(AUTHORS) - 1), st.integers(1, HELD)), max_size=14)
modes = st.sampled_from(["whole", "bytes", "random"])


class Link:
    """Two sessions and the bytes in flight each way, delivered in an order and
    in chunks chosen by ``rnd``; every delivery is checked for resent entries."""

    def __init__(self, a: ReferenceSession, b: ReferenceSession, rnd: random.Random, mode: str):
        self.sessions = (a, b)
        self.rnd, self.mode = rnd, mode
        self.pending = [bytearray(a.start()), bytearray(b.start())]  # [a→b, b→a]
        self.delivered = 0

    def push(self, side: int, data: bytes) -> None:
        self.pending[side] += data

    def step(self) -> bool:
        sides = [s for s in (0, 1) if self.pending[s]]
        if not sides:
            return False
        side = self.rnd.choice(sides)
        buffer = self.pending[side]
        if self.mode == "whole":
            size = len(buffer)
        elif self.mode == "bytes":
            size = 1
        else:
            size = self.rnd.randint(1, min(len(buffer), 64))
        chunk = bytes(buffer[:size])
        del buffer[:size]
        self.delivered += size
        self.push(1 - side, deliver_checked(self.sessions[1 - side], chunk))  # its reply
        return True

    def run(self, *, cut_at: int | None = None, limit: int = 200_000) -> bool:
        """Deliver until nothing is in flight (True), or until ``cut_at`` bytes went (False)."""
        for _ in range(limit):
            if cut_at is not None and self.delivered >= cut_at:
                return False
            if not self.step():
                return True
        raise AssertionError("the sessions are still talking")

    def end_streams(self) -> None:
        """Both byte streams end (bytes still in flight are lost)."""
        for session in self.sessions:
            session.receive(b"")


def deliver_checked(receiver: ReferenceSession, chunk: bytes) -> bytes:
    held = receiver.log.keys()
    before = Counter(receiver.received)
    reply = receiver.receive(chunk)
    for key in receiver.received - before:
        assert key not in held, f"an entry the receiver held was sent: {key[1]}"
    assert all(n == 1 for n in receiver.received.values()), "an entry was received twice"
    return reply


def finish_cleanly(link: Link) -> None:
    assert link.run()
    a, b = link.sessions
    for session in link.sessions:
        assert session.error is None and session.peer_error is None
        assert session.conn.closed
    link.end_streams()
    assert a.ended is not None and a.ended.clean
    assert b.ended is not None and b.ended.clean


def assert_union(a: ReferenceNode, b: ReferenceNode, keys: set[Key]) -> None:
    expected = {(AUTHORS[i].node_id.key, seq) for i, seq in keys}
    assert key_set(a.log) == expected
    assert key_set(b.log) == expected
    for author, seq in expected:
        assert a.log.get(author, seq) == b.log.get(author, seq)


def assert_repeat_sync_is_cheap(a: ReferenceNode, b: ReferenceNode) -> None:
    a.live = b.live = False  # a sync that ends once settled
    link = Link(a.session(b.key), b.session(a.key), random.Random(0), "whole")
    finish_cleanly(link)
    for session in link.sessions:
        assert session.stats.entries_sent == 0
        assert session.conn.bytes_sent < 150  # HELLO, CREDIT, HAVE_END, WANT_END, DONE, BYE


def nodes(a_keys: set[Key], b_keys: set[Key], *, live: bool = False) -> tuple[ReferenceNode, ...]:
    a = ReferenceNode(bytes([0xA1]) * 32, log_of(a_keys), live=live)
    b = ReferenceNode(bytes([0xB2]) * 32, log_of(b_keys), live=live, role="mule")
    return a, b


@settings(max_examples=30)
@given(holdings, holdings, modes, st.randoms(use_true_random=False))
@pytest.mark.slow
def test_any_interleaving_and_cutting_converges_on_the_union(
    a_keys: set[Key], b_keys: set[Key], mode: str, rnd: random.Random
) -> None:
    a, b = nodes(a_keys, b_keys)
    link = Link(a.session(b.key), b.session(a.key), rnd, mode)
    finish_cleanly(link)
    sa, sb = link.sessions
    assert sb.stats.entries_stored == len(a_keys - b_keys)
    assert sa.stats.entries_stored == len(b_keys - a_keys)
    assert_union(a, b, a_keys | b_keys)
    assert_repeat_sync_is_cheap(a, b)


@settings(max_examples=30)
@given(
    holdings,
    holdings,
    modes,
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 3000), min_size=1, max_size=3),
)
@pytest.mark.slow
def test_sessions_cut_off_midway_resume_from_their_checkpoints(
    a_keys: set[Key], b_keys: set[Key], mode: str, rnd: random.Random, cuts: list[int]
) -> None:
    a, b = nodes(a_keys, b_keys)
    for cut in cuts:
        link = Link(a.session(b.key), b.session(a.key), rnd, mode)
        if link.run(cut_at=cut):
            link.end_streams()  # everything was said; the streams end (cleanly or not)
        else:
            link.end_streams()  # cut off: bytes in flight are lost
        for session in link.sessions:
            assert session.finished
    # Whatever survived is valid; a full session then completes the union.
    finish_cleanly(Link(a.session(b.key), b.session(a.key), rnd, mode))
    assert_union(a, b, a_keys | b_keys)
    assert_repeat_sync_is_cheap(a, b)


@settings(max_examples=25)
@given(
    holdings,
    holdings,
    modes,
    st.randoms(use_true_random=False),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, len(AUTHORS) - 1), st.integers(0, 400)),
        max_size=2 * len(AUTHORS) * EXTRA,
    ),
)
def test_live_sessions_replicate_entries_appended_while_they_run(
    a_keys: set[Key],
    b_keys: set[Key],
    mode: str,
    rnd: random.Random,
    appends: list[tuple[bool, int, int]],
) -> None:
    a, b = nodes(a_keys, b_keys, live=True)
    link = Link(a.session(b.key), b.session(a.key), rnd, mode)
    added: set[Key] = set()
    next_seq = dict.fromkeys(range(len(AUTHORS)), HELD + 1)
    for to_b, author, after in appends:
        # Let ``after`` bytes go, then append the feed's next entry on one side and poke it.
        link.run(cut_at=link.delivered + after)
        seq = next_seq[author]
        if seq > HELD + EXTRA:
            continue
        next_seq[author] = seq + 1
        side = 1 if to_b else 0
        node = (a, b)[side]
        assert node.log.add(entry((author, seq)))
        added.add((author, seq))
        link.push(side, link.sessions[side].poke())  # side 0 is a→b
    assert link.run()  # quiet: both still live, nothing in flight
    for session in link.sessions:
        assert not session.finished and session.error is None
    assert_union(a, b, a_keys | b_keys | added)
    link.push(0, link.sessions[0].close("leaving"))
    finish_cleanly(link)  # the other live node answers BYE with BYE
    assert_union(a, b, a_keys | b_keys | added)
    assert_repeat_sync_is_cheap(a, b)
