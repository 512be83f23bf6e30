"""The fleet document's fold: the rules, and that any delivery order gives the same membership."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.entry import Entry, sign_entry
from agent.fleet import COLLECTION, fleet_id_of, fold, format_fleet_id, op_body, parse_fleet_id
from agent.identity import Identity

ADMIN, ADMIN2, B, C, STRANGER = (Identity(bytes([n]) * 32) for n in range(1, 6))


class Feeds:
    """Feeds of several identities, with timestamps the test chooses."""

    def __init__(self) -> None:
        self.heads: dict[bytes, tuple[int, bytes | None]] = {}

    def write(self, who: Identity, ts: int, body: Any, collection: str = COLLECTION) -> Entry:
        seq, prev = self.heads.get(who.node_id.key, (0, None))
        entry = sign_entry(who, seq=seq + 1, prev=prev, ts=ts, collection=collection, body=body)
        self.heads[who.node_id.key] = (entry.seq, entry.hash)
        return entry


def founded() -> tuple[Feeds, Entry, bytes]:
    feeds = Feeds()
    genesis = feeds.write(ADMIN, 100, op_body("create", name="field"))
    return feeds, genesis, fleet_id_of(genesis)


def key(who: Identity) -> bytes:
    return who.node_id.key


def test_fleet_id_text_round_trips_and_catches_typos() -> None:
    _, _, fleet = founded()
    text = format_fleet_id(fleet)
    assert parse_fleet_id(text) == fleet and len(text) == 32
    typo = text[:-3] + ("a" if text[-3] != "a" else "b") + text[-2:]
    try:
        parse_fleet_id(typo)
    except ValueError as exc:
        assert "checksum" in str(exc) or "base32" in str(exc)
    else:
        raise AssertionError("a mistyped fleet id was accepted")


def test_creator_is_the_first_admin_and_a_member_is_pending_until_approved() -> None:
    feeds, genesis, fleet = founded()
    add = feeds.write(ADMIN, 110, op_body("add", fleet, key(B), role="member", groups=["north"]))
    pending = fold([genesis, add], fleet)
    assert pending.founded_by == key(ADMIN) and pending.name == "field"
    assert pending.admins() == [key(ADMIN)]
    assert pending.is_member(key(B)) and not pending.is_approved(key(B))
    assert pending.get(key(B)).groups == ("north",)  # type: ignore[union-attr]
    approve = feeds.write(ADMIN, 120, op_body("approve", fleet, key(B)))
    assert fold([genesis, add, approve], fleet).is_approved(key(B))


def test_entries_of_non_admins_are_ignored_and_reported() -> None:
    feeds, genesis, fleet = founded()
    add = feeds.write(ADMIN, 110, op_body("add", fleet, key(B)))
    forged = feeds.write(B, 120, op_body("grant-admin", fleet, key(B)))
    stranger = feeds.write(STRANGER, 130, op_body("add", fleet, key(STRANGER), role="admin"))
    m = fold([genesis, add, forged, stranger], fleet)
    assert m.admins() == [key(ADMIN)] and not m.is_member(key(STRANGER))
    reasons = {i.author: i.reason for i in m.ignored}
    assert reasons == {
        key(B): "signed by a node that is not an admin",
        key(STRANGER): "signed by a node that is not an admin",
    }


def test_a_forged_genesis_founds_another_fleet() -> None:
    _feeds, genesis, fleet = founded()
    other = Feeds().write(STRANGER, 50, op_body("create", name="field"))
    takeover = Feeds()
    takeover.heads[key(STRANGER)] = (other.seq, other.hash)
    add = takeover.write(STRANGER, 60, op_body("add", fleet, key(STRANGER), role="admin"))
    m = fold([genesis, other, add], fleet)
    assert m.founded_by == key(ADMIN) and not m.is_member(key(STRANGER))


def test_revocation_is_final_and_cuts_the_revoked_admins_later_entries() -> None:
    feeds, genesis, fleet = founded()
    entries = [genesis]
    entries.append(feeds.write(ADMIN, 110, op_body("add", fleet, key(ADMIN2), role="admin")))
    entries.append(feeds.write(ADMIN, 111, op_body("approve", fleet, key(ADMIN2))))
    entries.append(feeds.write(ADMIN2, 120, op_body("add", fleet, key(B))))  # ADMIN2 seq 1
    entries.append(feeds.write(ADMIN, 130, op_body("revoke", fleet, key(ADMIN2), upto=1)))
    # a stolen ADMIN2 key writes back-dated entries after its revocation: seq 2, 3
    entries.append(feeds.write(ADMIN2, 121, op_body("approve", fleet, key(B))))
    entries.append(feeds.write(ADMIN2, 122, op_body("revoke", fleet, key(ADMIN), upto=9)))
    entries.append(feeds.write(ADMIN, 140, op_body("approve", fleet, key(ADMIN2))))
    entries.append(feeds.write(ADMIN, 141, op_body("add", fleet, key(ADMIN2))))
    m = fold(entries, fleet)
    assert m.admins() == [key(ADMIN)]
    assert m.is_revoked(key(ADMIN2)) and m.get(key(ADMIN2)).revoked_upto == 1  # type: ignore[union-attr]
    assert m.is_member(key(B)) and not m.is_approved(key(B))  # the add (seq 1) counts
    why = sorted(i.reason for i in m.ignored)
    assert why == [
        "the node is revoked (revocation is final)",
        "the node is revoked (revocation is final)",
        "written after its author was revoked",
        "written after its author was revoked",
    ]


def test_the_last_admin_cannot_be_removed_and_the_first_of_two_mutual_removals_wins() -> None:
    feeds, genesis, fleet = founded()
    alone = [genesis, feeds.write(ADMIN, 110, op_body("drop-admin", fleet, key(ADMIN)))]
    alone.append(feeds.write(ADMIN, 111, op_body("revoke", fleet, key(ADMIN), upto=0)))
    m = fold(alone, fleet)
    assert m.admins() == [key(ADMIN)]
    assert [i.reason for i in m.ignored] == [
        "it would remove the last admin",
        "it would revoke the last admin",
    ]
    feeds, genesis, fleet = founded()
    two = [
        genesis,
        feeds.write(ADMIN, 110, op_body("add", fleet, key(ADMIN2), role="admin")),
        feeds.write(ADMIN, 111, op_body("approve", fleet, key(ADMIN2))),
        feeds.write(ADMIN2, 130, op_body("drop-admin", fleet, key(ADMIN))),
        feeds.write(ADMIN, 131, op_body("drop-admin", fleet, key(ADMIN2))),
    ]
    m = fold(two, fleet)
    assert m.admins() == [key(ADMIN2)] and m.is_approved(key(ADMIN))
    assert [i.reason for i in m.ignored] == ["signed by a node that is not an admin"]


def test_malformed_bodies_are_ignored_with_a_reason() -> None:
    feeds, genesis, fleet = founded()
    bad = [
        feeds.write(ADMIN, 110, {"op": "add", "fleet": fleet, "node": b"short"}),
        feeds.write(ADMIN, 111, {"op": "explode", "fleet": fleet, "node": key(B)}),
        feeds.write(ADMIN, 112, op_body("add", fleet, key(B), role="emperor")),
        feeds.write(ADMIN, 113, op_body("approve", fleet, key(C))),
    ]
    m = fold([genesis, *bad], fleet)
    assert [i.reason for i in m.ignored] == [
        "no valid node key",
        "unknown or misplaced operation 'explode'",
        "unknown role 'emperor'",
        "the node is not a member",
    ]
    assert list(m.members) == [key(ADMIN)]


def test_without_the_genesis_nothing_counts() -> None:
    feeds, _genesis, fleet = founded()
    add = feeds.write(ADMIN, 110, op_body("add", fleet, key(B)))
    m = fold([add], fleet)
    assert not m.members and m.ignored[0].reason == "the fleet's creation entry is not here yet"


# ------------------------------------------------------------------ properties

ACTORS = [ADMIN, ADMIN2, B, C, STRANGER]
OPS = ["add", "add-admin", "approve", "revoke", "grant-admin", "drop-admin", "rule"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Entry], bytes]:
    """A genesis and up to 25 fleet operations by random actors at random times
    (clock ties and skew included)."""
    feeds, genesis, fleet = founded()
    entries = [genesis]
    clocks = {key(a): 100 for a in ACTORS}
    for _ in range(draw(st.integers(0, 25))):
        actor = draw(st.sampled_from(ACTORS))
        target = draw(st.sampled_from(ACTORS))
        op = draw(st.sampled_from(OPS))
        clocks[key(actor)] += draw(st.integers(1, 30))
        seq = feeds.heads.get(key(target), (0, None))[0]
        if op == "add-admin":
            body = op_body("add", fleet, key(target), role="admin", groups=["g"])
        elif op == "revoke":
            body = op_body("revoke", fleet, key(target), upto=draw(st.integers(0, seq + 1)))
        elif op == "rule":  # per-collection rules: a later one for a pattern replaces it
            groups = st.none() | st.lists(st.sampled_from(["g", "h"]), max_size=2)
            body = op_body("rule", fleet, collection=draw(st.sampled_from(["x", "x*", "*"])),
                           write=draw(groups), read=draw(groups))  # fmt: skip
        else:
            body = op_body(op, fleet, key(target))
        entries.append(feeds.write(actor, clocks[key(actor)], body))
    return entries, fleet


def summary(entries: list[Entry], fleet: bytes) -> tuple[object, ...]:
    m = fold(entries, fleet)
    return (m.signature(), sorted((i.author, i.seq, i.reason) for i in m.ignored))


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
@pytest.mark.slow
def test_any_delivery_order_gives_the_same_membership(
    history: tuple[list[Entry], bytes], rnd: Any
) -> None:
    entries, fleet = history
    expected = summary(entries, fleet)
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert summary(shuffled, fleet) == expected
    assert summary(shuffled + shuffled[: len(shuffled) // 2], fleet) == expected  # duplicates


@settings(max_examples=200, deadline=None)
@given(histories())
@pytest.mark.slow
def test_invariants_hold_for_any_history(history: tuple[list[Entry], bytes]) -> None:
    entries, fleet = history
    m = fold(entries, fleet)
    assert m.admins(), "a fleet always keeps an admin"
    assert all(not m.members[a].revoked for a in m.admins())
    assert not m.is_member(key(STRANGER)) or m.members[key(STRANGER)].added_by != key(STRANGER)
    counted = len(entries) - 1 - len(m.ignored)
    assert counted >= 0
