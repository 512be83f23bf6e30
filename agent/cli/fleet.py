"""``lichen fleet init | approve | revoke | admin | members``: founding a fleet and
running its membership, and the helpers every ``lichen fleet`` command shares.

``invite`` and ``join`` (a new node coming in) are :mod:`.fleet_invite`;
``rule``, ``rules`` and ``group`` are :mod:`.fleet_rules`."""

from __future__ import annotations

from typing import Any

import click

from ..entry import Entry
from ..errors import LichenError
from ..fleet import (
    COLLECTION,
    FleetView,
    Member,
    Membership,
    fleet_id_of,
    format_fleet_id,
    op_body,
    read_fleet_file,
    stale,
    write_fleet_file,
)
from ..fleet.sealing import generation_body
from ..home import Home
from ..identity import Identity, NodeId
from ..store.log_store import Draft, LogStore
from .common import (
    agent_status,
    home_option,
    json_option,
    node_clock,
    open_node,
    open_store,
    print_json,
)

__all__ = ["fleet_group"]


@click.group("fleet")
def fleet_group() -> None:
    """The fleet: nodes that trust each other, run by admins (docs/fleet.md).

    \b
    lichen fleet init                        this node founds a fleet, as its first admin
    lichen fleet invite --expires 1h         a one-time code (and QR) for a new node
    lichen fleet join CODE --peer tcp://…    on the new node: join with that code
    lichen fleet approve NODE                its writes count from now on
    lichen fleet revoke NODE                 out for good; its sessions end
    lichen fleet members                     who is in the fleet
    """


def _fleet(home: Home) -> bytes:
    fleet = read_fleet_file(home.fleet_file)
    if fleet is None:
        raise LichenError(
            f"{home.path} is in no fleet. Fix: lichen fleet init (a new fleet), or "
            "lichen fleet join CODE --peer ADDRESS (with an admin's invite)"
        )
    return fleet


def _membership(store: LogStore, fleet: bytes) -> Membership:
    return FleetView(store, fleet).membership


def _require_admin(membership: Membership, identity: Identity) -> None:
    me = membership.get(identity.node_id.key)
    if me is None or not me.admin:
        state = "not a member" if me is None else f"a {me.state} {me.role}"
        raise LichenError(
            f"this node is {state} of fleet {format_fleet_id(membership.fleet)}, not an admin: "
            "only an admin's entries count. Fix: run this on an admin's node"
        )


def _append(store: LogStore, identity: Identity, body: dict[str, Any]) -> Entry:
    (entry,) = store.append(identity, node_clock(store, identity), [Draft(COLLECTION, body)])
    return entry


def _rekey(store: LogStore, identity: Identity, fleet: bytes) -> list[str]:
    """Write a new key generation for every sealed rule whose current one is missing
    or not sealed to exactly its readers now (a reader left or joined); what was
    written, one line each."""
    done = []
    for rule, gen, readers in stale(_membership(store, fleet)):
        fields = generation_body(rule.pattern, gen, readers)
        _append(store, identity, op_body("key", fleet, **fields))
        done.append(f"key generation {gen} of {rule.pattern} sealed to {len(readers)} readers")
    return done


def _resolve(membership: Membership, text: str) -> bytes:
    """A member named by its node id, or by an unambiguous start of it (≥ 8 characters)."""
    text = text.strip()
    try:
        return NodeId.parse(text).key
    except ValueError:
        pass
    if len(text) < 8:
        raise LichenError(
            f"{text!r} is not a node id (give the whole lc1… id, or its first 8+ characters)"
        )
    found = [k for k in membership.members if str(NodeId(k)).startswith(text)]
    if len(found) != 1:
        what = "no member" if not found else f"{len(found)} members"
        raise LichenError(f"{text!r} names {what} of the fleet. Fix: give the whole node id")
    return found[0]


@fleet_group.command("init")
@home_option
@click.option("--name", default="", help="A name for people, e.g. the site.")
def fleet_init(name: str) -> None:
    """Found a fleet: this node becomes its first admin. The fleet id is derived
    from this node's key and the creation entry."""
    home, config, identity = open_node()
    existing = read_fleet_file(home.fleet_file)
    if existing is not None:
        raise LichenError(f"this node is already in fleet {format_fleet_id(existing)}")
    with open_store(home, config) as store:
        entry = _append(store, identity, op_body("create", name=name))
    fleet = fleet_id_of(entry)
    write_fleet_file(home.fleet_file, fleet)
    click.echo(f"founded fleet {format_fleet_id(fleet)}" + (f" ({name})" if name else ""))
    click.echo(f"admin: {identity.node_id} ({identity.node_id.fingerprint})")
    click.echo("next: lichen fleet invite   (a code for each new node)")


def _admin_action(node_text: str, op: str, **fields: Any) -> tuple[Home, bytes, Member | None]:
    home, config, identity = open_node()
    fleet = _fleet(home)
    with open_store(home, config) as store:
        membership = _membership(store, fleet)
        _require_admin(membership, identity)
        node = _resolve(membership, node_text)
        if op == "revoke":
            head = store.head(node)
            fields["upto"] = 0 if head is None else head.seq
        entry = _append(store, identity, op_body(op, fleet, node, **fields))
        after = _membership(store, fleet)
        counted = all(ignored.hash != entry.hash for ignored in after.ignored)
        rekeyed = _rekey(store, identity, fleet) if counted else []
    for ignored in after.ignored:
        if ignored.hash == entry.hash:  # e.g. revoking the last admin: nothing changed
            raise LichenError(f"{entry.where} was written but does not count: {ignored.reason}")
    for line in rekeyed:
        click.echo(line)
    return home, node, after.get(node)


@fleet_group.command("approve")
@home_option
@click.argument("node")
def fleet_approve(node: str) -> None:
    """Approve NODE (a member that joined): its writes to shared collections count
    from now on, on every node that has this entry."""
    _, key, _member = _admin_action(node, "approve")
    click.echo(f"approved {NodeId(key)}")


@fleet_group.command("revoke")
@home_option
@click.argument("node")
@click.option("--reason", default="", help="Why, for the fleet document and the logs.")
def fleet_revoke(node: str, reason: str) -> None:
    """Revoke NODE for good: every node refuses its sessions (running agents end
    them within seconds) and its later entries; what it wrote before stays."""
    home, key, member = _admin_action(node, "revoke", reason=reason or None)
    upto = member.revoked_upto if member else 0
    click.echo(f"revoked {NodeId(key)} (its entries after seq {upto} do not count)")
    if agent_status(home.status_file) is not None:
        click.echo("the running agent ends its sessions with it within a few seconds")


@fleet_group.command("admin")
@home_option
@click.argument("node")
@click.option("--remove", is_flag=True, help="Make NODE a plain member again.")
def fleet_admin(node: str, remove: bool) -> None:
    """Make NODE (an approved member) an admin, or with --remove a plain member.
    The last admin cannot be removed."""
    _, key, _member = _admin_action(node, "drop-admin" if remove else "grant-admin")
    click.echo(f"{NodeId(key)} is {'no longer' if remove else 'now'} an admin")


@fleet_group.command("members")
@home_option
@json_option
@click.option(
    "--ignored",
    "show_ignored",
    is_flag=True,
    help="Also list the entries that do not count, and why.",
)
def fleet_members(as_json: bool, show_ignored: bool) -> None:
    """The members of this node's fleet: role, state, groups, who added them."""
    home, config, identity = open_node()
    fleet = _fleet(home)
    with open_store(home, config) as store:
        membership = _membership(store, fleet)
    rows = sorted(
        membership.members.values(), key=lambda m: (m.revoked, m.role != "admin", m.added_ts)
    )
    if as_json:
        print_json({
            "fleet": format_fleet_id(fleet),
            "name": membership.name,
            "members": [_member_json(m, identity) for m in rows],
            "ignored": [{"author": str(NodeId(i.author)), "seq": i.seq, "reason": i.reason}
                        for i in membership.ignored],
        })  # fmt: skip
        return
    click.echo(
        f"fleet {format_fleet_id(fleet)}" + (f" ({membership.name})" if membership.name else "")
    )
    header = ("NODE", "FINGERPRINT", "ROLE", "STATE", "GROUPS", "ADDED BY")
    table = [header] + [
        (
            str(NodeId(m.node)) + (" (this node)" if m.node == identity.node_id.key else ""),
            NodeId(m.node).fingerprint,
            m.role,
            m.state + (f" ({m.reason})" if m.revoked and m.reason else ""),
            ",".join(m.groups) or "-",
            NodeId(m.added_by).fingerprint if m.added_by else "-",
        )
        for m in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if membership.ignored:
        click.echo(f"{len(membership.ignored)} entries of _fleet do not count"
                   + ("" if show_ignored else " (--ignored lists them)"))  # fmt: skip
        if show_ignored:
            for i in membership.ignored:
                click.echo(f"  {NodeId(i.author).short}…/{i.seq}: {i.reason}")


def _member_json(m: Member, identity: Identity) -> dict[str, Any]:
    return {
        "node": str(NodeId(m.node)),
        "fingerprint": NodeId(m.node).fingerprint,
        "role": m.role,
        "state": m.state,
        "admin": m.admin,
        "groups": list(m.groups),
        "added_by": str(NodeId(m.added_by)) if m.added_by else None,
        "approved_by": str(NodeId(m.approved_by)) if m.approved_by else None,
        "revoked_by": str(NodeId(m.revoked_by)) if m.revoked_by else None,
        "revoked_upto": m.revoked_upto,
        "reason": m.reason,
        "this_node": m.node == identity.node_id.key,
    }
