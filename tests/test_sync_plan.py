"""What a node asks for: plan_wants turns an offer and what is held into WANTs
that cover every missing seq and that the peer's rules accept — however
fragmented the holding (at most MAX_RANGES WANTs in a round)."""

from __future__ import annotations

import functools

import pytest

from agent.entry import Entry, sign_entry
from agent.identity import Identity
from agent.sync import (
    DEFAULT_WINDOW,
    MAX_RANGES,
    Have,
    HaveEnd,
    Hello,
    MemoryLog,
    ReferenceNode,
    SyncConnection,
    Want,
    WantEnd,
    frame_message,
    plan_wants,
    run_pair,
)
from agent.sync.plan import RangeSet

ALICE, BOB = Identity(b"\x01" * 32), Identity(b"\x02" * 32)
A, B = ALICE.node_id.key, BOB.node_id.key


def every_other(first: int, last: int) -> list[tuple[int, int]]:
    """A holding of ``first, first + 2, first + 4 …``: as fragmented as one can be."""
    return [(seq, seq) for seq in range(first, last + 1, 2)]


def left_out(haves: list[Have], held: list[list[tuple[int, int]]], wants: list[Want]) -> set[int]:
    """Offered seqs (of feed A) neither held nor wanted."""
    have = RangeSet()
    for parts in held:
        for first, last in parts:
            have.add(first, last)
    wanted = RangeSet()
    for want in wants:
        wanted.add(want.from_seq, want.to_seq)
    return {
        seq
        for offer in haves
        for seq in range(offer.from_seq, offer.to_seq + 1)
        if seq not in have and seq not in wanted
    }


def the_provider_accepts(haves: list[Have], wants: list[Want]) -> None:
    """The offering side's connection takes ``wants`` as the answer to ``haves``
    (ranges inside the offer, ascending per feed, at most MAX_RANGES)."""
    provider = SyncConnection()
    provider.send_all([Hello(node=A, role="board"), DEFAULT_WINDOW])
    provider.receive_data(
        frame_message(Hello(node=B, role="board")) + frame_message(DEFAULT_WINDOW)
    )
    list(provider.events())
    provider.send_all([*haves, HaveEnd(change=1)])
    provider.receive_data(b"".join(frame_message(w) for w in [*wants, WantEnd()]))
    list(provider.events())  # RemoteProtocolError if the peer's rules refuse them
    assert len(provider.their_wants) == len(wants)


def test_a_plain_gap_is_one_want() -> None:
    assert plan_wants([Have(author=A, from_seq=1, to_seq=15)], [[(1, 10)]]) == [
        Want(author=A, from_seq=11, to_seq=15)
    ]


@pytest.mark.slow
def test_a_holding_too_fragmented_for_one_round_still_gets_valid_wants() -> None:
    """Every other seq held against one long offer: one WANT per missing seq would be
    more than a round allows, and the session used to die on its own WANT."""
    last = 2 * MAX_RANGES + 11
    haves = [Have(author=A, from_seq=1, to_seq=last)]
    held = [every_other(1, last)]  # 1, 3, 5 … last: MAX_RANGES + 5 seqs missing, apart
    wants = plan_wants(haves, held)
    assert len(wants) <= MAX_RANGES
    assert left_out(haves, held, wants) == set()  # nothing is left out…
    # …and five held seqs come again: one per merge, the fewest that fit
    assert sum(w.to_seq - w.from_seq + 1 for w in wants) == MAX_RANGES + 5 + 5
    the_provider_accepts(haves, wants)


def test_merging_never_crosses_what_was_not_offered() -> None:
    """Two offers of one feed with seqs between them that were not offered: a WANT
    spanning both would be refused, so the merges stay inside each offer."""
    cap = 4
    haves = [Have(author=A, from_seq=1, to_seq=9), Have(author=A, from_seq=20, to_seq=29)]
    held = [every_other(1, 9), every_other(21, 29)]
    wants = plan_wants(haves, held, max_ranges=cap)
    assert len(wants) <= cap
    assert all(w.to_seq <= 9 or w.from_seq >= 20 for w in wants)
    assert left_out(haves, held, wants) == set()


def test_the_merges_re_send_as_little_as_they_can() -> None:
    """Gaps held between wants: 1 seq, 5 seqs, 1 seq. With room for two WANTs, the
    cheapest merge (a 1-seq gap) is taken, never the 5-seq one."""
    haves = [Have(author=A, from_seq=1, to_seq=20)]
    held = [[(1, 1), (3, 3), (5, 9), (11, 11), (13, 20)]]
    assert plan_wants(haves, held) == [
        Want(author=A, from_seq=2, to_seq=2),
        Want(author=A, from_seq=4, to_seq=4),
        Want(author=A, from_seq=10, to_seq=10),
        Want(author=A, from_seq=12, to_seq=12),
    ]
    assert plan_wants(haves, held, max_ranges=3) == [  # seq 3 comes again
        Want(author=A, from_seq=2, to_seq=4),
        Want(author=A, from_seq=10, to_seq=10),
        Want(author=A, from_seq=12, to_seq=12),
    ]
    two = plan_wants(haves, held, max_ranges=2)
    assert two == [Want(author=A, from_seq=2, to_seq=4), Want(author=A, from_seq=10, to_seq=12)]


@functools.cache
def chain(identity: Identity, count: int) -> tuple[Entry, ...]:
    out: list[Entry] = []
    for seq in range(1, count + 1):
        prev = out[-1].hash if out else None
        out.append(sign_entry(identity, seq=seq, prev=prev, ts=seq, collection="c", body=seq))
    return tuple(out)


@pytest.mark.slow
def test_a_session_against_a_fragmented_holding_completes() -> None:
    """End to end, the driver every node runs: Bob holds every other entry of
    Alice's long feed and syncs with Alice, who holds it all. The session used to
    raise LocalProtocolError ("more than 100000 WANT ranges in one round")."""
    entries = chain(ALICE, 2 * MAX_RANGES + 11)
    alice = ReferenceNode(A, MemoryLog(entries))
    bob = ReferenceNode(B, MemoryLog(entries[::2]))
    a, b = alice.session(B), bob.session(A)
    run_pair(a, b)
    assert a.error is None and b.error is None
    assert bob.log.keys() == alice.log.keys()
    assert b.stats.duplicates <= 10  # the few held entries the merged WANTs covered
