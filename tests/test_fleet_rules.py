"""Per-collection rules: how the fold takes them, and the access policy they make on a real log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.clock import HybridClock
from agent.fleet import (
    COLLECTION,
    FleetPolicy,
    FleetView,
    check_pattern,
    fleet_id_of,
    fold,
    op_body,
    parse_fleet_id,
)
from agent.identity import load_identity
from agent.store.log_store import Draft, LogStore

from .conftest import run_lichen
from .test_fleet_access import Log
from .test_fleet_document import ADMIN, ADMIN2, STRANGER, B, C, founded, key


def rule(
    fleet: bytes, pattern: str, write: object = None, read: list[str] | None = None
) -> dict[str, object]:
    return op_body("rule", fleet, collection=pattern, write=write, read=read)


def test_a_rule_by_an_admin_counts_and_a_later_one_for_the_pattern_replaces_it() -> None:
    feeds, genesis, fleet = founded()
    first = feeds.write(ADMIN, 110, rule(fleet, "climate", write=["sensors"], read=["ops"]))
    m = fold([genesis, first], fleet)
    got = m.rule_for("climate")
    assert got is not None and (got.write, got.read) == (("sensors",), ("ops",))
    assert got.set_by == key(ADMIN) and m.rule_for("climate2") is None
    later = feeds.write(ADMIN, 120, rule(fleet, "climate", write=["ops", "ops", "field"]))
    got = fold([later, first, genesis], fleet).rule_for("climate")  # order of delivery: none
    assert got is not None and (got.write, got.read) == (("field", "ops"), None)
    cleared = feeds.write(ADMIN, 130, rule(fleet, "climate"))  # neither field: no rule
    m = fold([genesis, first, later, cleared], fleet)
    assert m.rule_for("climate") is None and not m.ignored


def test_a_rule_by_a_non_admin_or_a_revoked_admin_is_ignored() -> None:
    feeds, genesis, fleet = founded()
    entries = [
        genesis,
        feeds.write(ADMIN, 110, op_body("add", fleet, key(B), groups=["ops"])),
        feeds.write(ADMIN, 111, op_body("approve", fleet, key(B))),
        feeds.write(ADMIN, 112, op_body("add", fleet, key(ADMIN2), role="admin")),
        feeds.write(ADMIN, 113, op_body("approve", fleet, key(ADMIN2))),
        feeds.write(B, 120, rule(fleet, "climate", read=["ops"])),  # a plain member
        feeds.write(STRANGER, 121, rule(fleet, "climate", read=["ops"])),
        feeds.write(ADMIN2, 122, rule(fleet, "pumps", write=["ops"])),  # ADMIN2 seq 1: counts
        feeds.write(ADMIN, 130, op_body("revoke", fleet, key(ADMIN2), upto=1)),
        # the revoked admin's later rule, back-dated before its revocation: seq 2
        feeds.write(ADMIN2, 125, rule(fleet, "pumps", write=["thieves"])),
    ]
    m = fold(entries, fleet)
    assert m.rule_for("climate") is None
    pumps = m.rule_for("pumps")
    assert pumps is not None and pumps.write == ("ops",) and pumps.set_by == key(ADMIN2)
    assert sorted(i.reason for i in m.ignored) == [
        "signed by a node that is not an admin",
        "signed by a node that is not an admin",
        "written after its author was revoked",
    ]


def test_patterns_exact_beats_prefix_and_the_longest_prefix_wins() -> None:
    feeds, genesis, fleet = founded()
    entries = [
        genesis,
        feeds.write(ADMIN, 110, rule(fleet, "*", read=["all"])),
        feeds.write(ADMIN, 111, rule(fleet, "readings/*", read=["readers"])),
        feeds.write(ADMIN, 112, rule(fleet, "readings/climate*", read=["climate"])),
        feeds.write(ADMIN, 113, rule(fleet, "readings/climate", read=["exact"])),
    ]
    m = fold(entries, fleet)
    read = {c: m.rule_for(c).read for c in  # type: ignore[union-attr]
            ("notes", "readings/soil", "readings/climate2", "readings/climate")}  # fmt: skip
    assert read == {
        "notes": ("all",),
        "readings/soil": ("readers",),
        "readings/climate2": ("climate",),
        "readings/climate": ("exact",),
    }
    assert m.rule_for("_fleet") is None and m.rule_for("_acks") is None  # internal: never


def test_malformed_rules_and_internal_collections_are_ignored_with_a_reason() -> None:
    feeds, genesis, fleet = founded()
    bad = [
        feeds.write(ADMIN, 110, rule(fleet, "_acks", write=["ops"])),
        feeds.write(ADMIN, 111, rule(fleet, "read*ings", write=["ops"])),
        feeds.write(ADMIN, 112, rule(fleet, "bad name", write=["ops"])),
        feeds.write(ADMIN, 113, rule(fleet, "climate", write="ops")),
        feeds.write(ADMIN, 114, {"op": "rule", "fleet": fleet}),
    ]
    m = fold([genesis, *bad], fleet)
    assert not m.rules
    reasons = [i.reason for i in m.ignored]
    assert "names an internal collection" in reasons[0]
    assert "may hold '*' only at its end" in reasons[1]
    assert "may only hold letters" in reasons[2]
    assert reasons[3] == "write is not a list of at most 32 names"
    assert "must be a non-empty text" in reasons[4]
    with pytest.raises(ValueError, match="internal collection"):
        check_pattern("_fleet*")
    assert check_pattern("climate*") == "climate*" and check_pattern("*") == "*"


@pytest.fixture
def ruled(tmp_path: Path) -> tuple[Log, bytes, FleetPolicy]:
    """A fleet on a real log: B approved in group ops, C approved in field, STRANGER
    pending in ops, ADMIN (the founder) in no group."""
    log = Log(tmp_path / "log.db")
    fleet = fleet_id_of(log.write(ADMIN, op_body("create", name="t")))
    log.write(ADMIN, op_body("add", fleet, key(B), groups=["ops"]))
    log.write(ADMIN, op_body("approve", fleet, key(B)))
    log.write(ADMIN, op_body("add", fleet, key(C), groups=["field"]))
    log.write(ADMIN, op_body("approve", fleet, key(C)))
    log.write(ADMIN, op_body("add", fleet, key(STRANGER), groups=["ops"]))
    return log, fleet, FleetPolicy(FleetView(log.store, fleet))


def test_without_a_rule_the_policy_is_what_it_was(ruled: tuple[Log, bytes, FleetPolicy]) -> None:
    _log, _fleet, policy = ruled
    outsider = ADMIN2.node_id.key  # not a member: a trust-store peer
    for who in (key(ADMIN), key(B), key(C), key(STRANGER), outsider):
        assert policy.may_read(who, "climate")
    assert policy.may_write(key(B), "climate", 1) and policy.may_write(outsider, "climate", 1)
    assert not policy.may_write(key(STRANGER), "climate", 1)  # pending


def test_a_rule_limits_writers_and_readers_to_approved_members_of_its_groups(
    ruled: tuple[Log, bytes, FleetPolicy],
) -> None:
    log, fleet, policy = ruled
    outsider = ADMIN2.node_id.key
    log.write(ADMIN, rule(fleet, "climate*", write=["ops"], read=["ops", "field"]))
    assert policy.view.refresh()  # a rule changes the membership's signature
    writers = {n for n in (ADMIN, B, C, STRANGER, ADMIN2) if policy.may_write(key(n), "climate", 1)}
    readers = {n for n in (ADMIN, B, C, STRANGER, ADMIN2) if policy.may_read(key(n), "climate/x")}
    assert writers == {B}  # not the founder (no group), not pending, not outsiders
    assert readers == {B, C}
    assert policy.may_write(outsider, "pumps", 1) and policy.may_read(outsider, "pumps")  # no rule
    assert policy.may_write(outsider, "_acks", 1) and policy.may_write(key(C), COLLECTION, 1)
    # the founder puts itself in ops (a later add sets its groups): now it may
    log.write(ADMIN, op_body("add", fleet, key(ADMIN), role="admin", groups=["ops"]))
    assert policy.view.refresh()
    assert policy.may_write(key(ADMIN), "climate", 1) and policy.may_read(key(ADMIN), "climate")
    assert policy.view.membership.admins() == [key(ADMIN)]
    log.write(ADMIN, op_body("revoke", fleet, key(B), upto=0))
    log.write(ADMIN, rule(fleet, "climate*", read=[]))  # nobody reads; everyone writes
    assert policy.view.refresh()
    assert not policy.may_write(key(B), "climate", 1) and not policy.may_read(key(B), "climate")
    assert not policy.may_read(key(ADMIN), "climate") and policy.may_write(key(C), "climate", 1)


@pytest.mark.slow
def test_a_bundle_imported_on_a_fleet_node_is_stored_by_the_rules(tmp_path: Path) -> None:
    """`lichen bundle import` (real processes, real files) applies the fleet's policy:
    the entries of a ruled collection by a member outside its write groups are refused."""
    a, c = tmp_path / "a", tmp_path / "c"
    for home in (a, c):
        run_lichen("init", "--board", "sim", "--name", home.name, home=home)
    run_lichen("fleet", "init", home=a)
    run_lichen("fleet", "rule", "secret*", "--write", "ops", home=a)
    fleet = json.loads((a / "state" / "fleet.json").read_text())["fleet"]
    admin, writer = load_identity(a / "identity.key"), load_identity(c / "identity.key")
    with LogStore(a / "log.db") as store:  # C joins in group field, and is approved
        for op in ("add", "approve"):
            body = op_body(op, parse_fleet_id(fleet), writer.node_id.key, groups=["field"])
            store.append(admin, HybridClock(), [Draft(COLLECTION, body)])
    with LogStore(c / "log.db") as store:
        drafts = [Draft("secret/plans", {"n": 1}), Draft("secret/plans", {"n": 2}),
                  Draft("notes", {"n": 3})]  # fmt: skip
        store.append(writer, HybridClock(), drafts)
    run_lichen("bundle", "export", str(tmp_path / "c.lbundle"), home=c)
    imported = run_lichen("bundle", "import", str(tmp_path / "c.lbundle"), "--json", home=a)
    report = json.loads(imported.stdout)
    assert (report["stored"], report["refused_by_policy"]) == (1, 2)
    with LogStore(a / "log.db") as store:
        assert [e.collection for e in store.feed(writer.node_id.key)] == ["notes"]


@pytest.mark.slow
def test_a_bundle_exported_for_a_member_leaves_out_what_it_may_not_read(tmp_path: Path) -> None:
    """`lichen bundle export --for NODE` (real processes, real files) leaves out the
    collections the fleet's read rules keep from NODE; without --for, or for one of
    this node's clouds, nothing is left out."""
    a = tmp_path / "a"
    run_lichen("init", "--board", "sim", "--name", "a", home=a)
    run_lichen("fleet", "init", home=a)
    run_lichen("fleet", "rule", "secret*", "--read", "ops", home=a)
    fleet = parse_fleet_id(json.loads((a / "state" / "fleet.json").read_text())["fleet"])
    admin, field, cloud = load_identity(a / "identity.key"), B, C
    with LogStore(a / "log.db") as store:  # B is an approved member of group field
        drafts = [Draft(COLLECTION, op_body(op, fleet, key(field), groups=["field"]))
                  for op in ("add", "approve")]  # fmt: skip
        drafts += [Draft("secret/plans", {"n": 1}), Draft("secret/plans", {"n": 2})]
        drafts += [Draft("notes", {"n": 3})]
        store.append(admin, HybridClock(), drafts)
    with (a / "lichen.toml").open("a") as toml:
        toml.write(f'\n[retention]\nack_from = ["{cloud.node_id}"]\n')

    def export(name: str, *args: str) -> dict[str, object]:
        out = run_lichen("bundle", "export", str(tmp_path / name), "--json", *args, home=a)
        return dict(json.loads(out.stdout))

    whole = export("all.lcb")
    for_field = export("field.lcb", "--for", str(field.node_id))
    assert for_field["left_out"] == ["secret/plans"] and whole["left_out"] == []
    assert for_field["entries"] == whole["entries"] - 2  # type: ignore[operator]
    for_cloud = export("cloud.lcb", "--for", str(cloud.node_id))
    assert for_cloud["left_out"] == [] and for_cloud["entries"] == whole["entries"]
    # what B gets is exactly what a sync would have sent it
    b = tmp_path / "b"
    run_lichen("init", "--board", "sim", "--name", "b", home=b)
    run_lichen("bundle", "import", str(tmp_path / "field.lcb"), home=b)
    with LogStore(b / "log.db") as store:
        held = {e.collection for e in store.feed(admin.node_id.key)}
    assert held == {COLLECTION, "notes"}
