"""Invite codes and the invite book; the fleet view, trust and access policy on a real log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.clock import HybridClock
from agent.entry import Entry
from agent.fleet import (
    COLLECTION,
    FleetPolicy,
    FleetView,
    InviteBook,
    InviteError,
    fleet_id_of,
    format_code,
    op_body,
    parse_code,
    read_fleet_file,
    write_fleet_file,
)
from agent.fleet.invites import MAX_OPEN
from agent.identity import Identity
from agent.mesh.trust import TrustPolicy, TrustStore
from agent.store.log_store import Draft, LogStore

from .conftest import seeded_identity

ADMIN, B, C, OUTSIDER = (seeded_identity(n) for n in (11, 12, 13, 14))


def test_an_invite_code_round_trips_and_a_typo_is_caught() -> None:
    secret = os.urandom(10)
    code = format_code(secret)
    assert len(code) == 23 and code.count("-") == 3
    assert parse_code(code) == secret
    assert parse_code(code.lower().replace("-", " ")) == secret
    for n in range(len(code)):
        if code[n] == "-":
            continue
        for letter in "AB7":  # the last letter's spare bits count too: one code, one spelling
            if letter != code[n]:
                with pytest.raises(InviteError, match="mistyped"):
                    parse_code(code[:n] + letter + code[n + 1 :])
    with pytest.raises(InviteError, match="not base32"):
        parse_code("not a code 1890")
    with pytest.raises(InviteError, match="has 10 characters"):
        parse_code("ABCDE-FGHIJ")


def test_an_invite_is_single_use_and_expires(tmp_path: Path) -> None:
    book = InviteBook(tmp_path / "state" / "invites.json")
    invite = book.create("member", ["north"], ttl_s=60, now_ms=1_000_000)
    assert (tmp_path / "state" / "invites.json").stat().st_mode & 0o777 == 0o600
    assert invite.refusal(1_000_001) is None
    assert "expired 1 s ago" in str(invite.refusal(1_061_000))
    used = book.claim(invite.id, "lc1joiner", "123456", now_ms=1_000_500)
    assert used.used_by == "lc1joiner" and used.sas == "123456"
    with pytest.raises(InviteError, match="already used by lc1joiner"):
        book.claim(invite.id, "lc1other", "654321", now_ms=1_000_600)
    late = book.create("admin", [], ttl_s=1, now_ms=2_000_000)
    with pytest.raises(InviteError, match="expired"):
        book.claim(late.id, "lc1late", "000000", now_ms=2_001_000)
    assert {i.id for i in book.candidates()} == {invite.id, late.id}  # kept: replays get a reason
    with pytest.raises(InviteError, match="not known"):
        book.claim("ffffffffffff", "lc1x", "1", now_ms=2_000_001)


def test_open_invites_are_bounded(tmp_path: Path) -> None:
    book = InviteBook(tmp_path / "invites.json")
    for _ in range(MAX_OPEN):
        book.create("member", [], ttl_s=60, now_ms=5_000)
    with pytest.raises(InviteError, match="invites are open already"):
        book.create("member", [], ttl_s=60, now_ms=5_000)
    book.create("member", [], ttl_s=60, now_ms=5_000 + 61_000)  # the others expired


def test_a_damaged_fleet_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    assert read_fleet_file(path) is None
    write_fleet_file(path, bytes(16))
    assert read_fleet_file(path) == bytes(16)
    path.write_text(json.dumps({"fleet": "lf1nonsense"}))
    with pytest.raises(Exception, match=r"fleet.json is damaged"):
        read_fleet_file(path)


class Log:
    """A real log with several authors writing into it (as if synced)."""

    def __init__(self, path: Path) -> None:
        self.store = LogStore(path)
        self.clock = HybridClock()

    def write(self, who: Identity, body: object, collection: str = COLLECTION) -> Entry:
        (entry,) = self.store.append(who, self.clock, [Draft(collection, body)])
        return entry


@pytest.fixture
def fleet_log(tmp_path: Path) -> tuple[Log, bytes]:
    log = Log(tmp_path / "log.db")
    genesis = log.write(ADMIN, op_body("create", name="t"))
    fleet = fleet_id_of(genesis)
    log.write(ADMIN, op_body("add", fleet, B.node_id.key))
    log.write(ADMIN, op_body("add", fleet, C.node_id.key))
    log.write(ADMIN, op_body("approve", fleet, C.node_id.key))
    return log, fleet


def test_pending_members_writes_are_refused_until_approved(fleet_log: tuple[Log, bytes]) -> None:
    log, fleet = fleet_log
    view = FleetView(log.store, fleet)
    policy = FleetPolicy(view)
    b, c, out = B.node_id.key, C.node_id.key, OUTSIDER.node_id.key
    assert not policy.may_write(b, "readings/climate", 1)
    assert policy.may_write(b, COLLECTION, 1)  # the fold decides what counts there
    assert policy.may_write(c, "readings/climate", 1)
    assert policy.may_write(out, "_acks", 1)  # not a member: as before (per-collection rules later)
    assert policy.may_read(b, "readings/climate")
    assert not view.refresh()  # nothing new
    log.write(ADMIN, op_body("approve", fleet, b))
    assert view.refresh() and policy.may_write(b, "readings/climate", 1)
    log.write(ADMIN, op_body("revoke", fleet, c, upto=3, reason="stolen"))
    assert view.refresh() and not policy.may_write(c, "readings/climate", 4)
    # what C wrote up to the revocation's cut stays good: others may still take it
    assert policy.may_write(c, "readings/climate", 3) and policy.may_write(c, "readings/climate", 1)
    log.write(B, {"note": "unrelated"}, collection="notes")
    assert not view.refresh()  # other collections do not make it fold again


def test_a_revoked_writer_of_a_ruled_collection_keeps_what_it_wrote_before_the_cut(
    fleet_log: tuple[Log, bytes],
) -> None:
    """Judged by the rules as the member it was: in the write group up to
    ``upto``, nothing after it; and never what it could not write then."""
    log, fleet = fleet_log
    c = C.node_id.key
    log.write(ADMIN, op_body("add", fleet, c, groups=["ops"]))
    log.write(ADMIN, op_body("rule", fleet, collection="climate", write=["ops"]))
    log.write(ADMIN, op_body("rule", fleet, collection="pumps", write=["field"]))
    log.write(ADMIN, op_body("revoke", fleet, c, upto=5, reason="lost"))
    policy = FleetPolicy(FleetView(log.store, fleet))
    assert [policy.may_write(c, "climate", seq) for seq in (1, 5, 6)] == [True, True, False]
    assert not policy.may_write(c, "pumps", 1)  # not a writer of it even before the cut
    assert policy.may_write(c, "notes", 5) and not policy.may_write(c, "notes", 6)


def test_trust_follows_the_fleet_and_revocation_wins_over_the_trust_store(
    fleet_log: tuple[Log, bytes], tmp_path: Path
) -> None:
    log, fleet = fleet_log
    store = TrustStore(tmp_path / "trust.json")
    store.add(str(OUTSIDER.node_id))
    store.add(str(C.node_id))
    trust = TrustPolicy(store, own=ADMIN.node_id, fleet=FleetView(log.store, fleet))
    assert trust.decide(B.node_id) is None  # pending members may connect (and read)
    assert trust.decide(C.node_id) is None
    assert trust.decide(OUTSIDER.node_id) is None  # an ad-hoc pair
    assert "is not in fleet lf1" in str(trust.decide(seeded_identity(99).node_id))
    log.write(ADMIN, op_body("revoke", fleet, C.node_id.key, upto=0, reason="lost"))
    assert trust.reload()
    assert trust.decide(C.node_id) == (
        f"{C.node_id} ({C.node_id.fingerprint}) was revoked from the fleet: lost"
    )
    assert not trust.reload()
