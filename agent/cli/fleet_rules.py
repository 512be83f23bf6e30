"""``lichen fleet rule | rules | group``: per-collection rules and members' groups.

A rule is an admin's ``rule`` entry of ``_fleet`` (:mod:`agent.fleet.rules`);
a member's groups are set by an ``add`` entry — the invite's, or a later one
written here by ``lichen fleet group`` (role and state kept). Both spread
like the rest of the fleet document; see docs/fleet.md, "Groups and rules".
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import LichenError
from ..fleet import Rule, check_groups, check_pattern, format_fleet_id, op_body
from ..identity import NodeId
from .common import home_option, json_option, open_node, open_store, option_value, print_json
from .fleet import _append, _fleet, _membership, _rekey, _require_admin, _resolve

__all__ = [
    "fleet_group_command",
    "fleet_rekey_command",
    "fleet_rule_command",
    "fleet_rules_command",
]


def _names(text: str | None, option: str) -> list[str] | None:
    """The group names of a comma-separated option (None: not given)."""
    if text is None:
        return None
    names = [g.strip() for g in text.split(",") if g.strip()]
    try:
        return list(check_groups(names, option))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _who(groups: tuple[str, ...] | None) -> str:
    if groups is None:
        return "everyone in the fleet"
    return "groups " + ",".join(groups) if groups else "nobody"


def _write(op: str | None, node: bytes | None = None, **fields: Any) -> None:
    """Write an admin's ``op`` entry into ``_fleet``; one the fold does not count
    is an error naming why. Then the key generations sealed rules now need
    (:func:`agent.cli.fleet._rekey`); ``op`` None writes only those."""
    home, config, identity = open_node()
    fleet = _fleet(home)
    with open_store(home, config) as store:
        _require_admin(_membership(store, fleet), identity)
        if op is not None:
            entry = _append(store, identity, op_body(op, fleet, node, **fields))
            for ignored in _membership(store, fleet).ignored:
                if ignored.hash == entry.hash:
                    raise LichenError(
                        f"{entry.where} was written but does not count: {ignored.reason}"
                    )
        rekeyed = _rekey(store, identity, fleet)
    for line in rekeyed:
        click.echo(line)
    if op is None and not rekeyed:
        click.echo("every sealed collection's key is sealed to exactly its readers")


@click.command("rule")
@home_option
@click.argument("collection")
@click.option("--write", "write", metavar="GROUPS", help="Groups whose members may write it.")
@click.option("--read", "read", metavar="GROUPS", help="Groups whose members may read it.")
@click.option(
    "--carry", "carry", metavar="GROUPS",
    help="Groups whose members relay it without reading it (with --sealed).",
)  # fmt: skip
@click.option("--sealed", is_flag=True, help="Seal its entries: only --read groups open them.")
@click.option("--clear", is_flag=True, help="Take the rule away: everyone may again.")
def fleet_rule_command(
    *,
    collection: str,
    write: str | None,
    read: str | None,
    carry: str | None,
    sealed: bool,
    clear: bool,
) -> None:
    """Who may write, read and carry COLLECTION: a name (climate) or a prefix
    ending in * (readings/*). --write, --read and --carry take comma-separated
    groups; --write or --read left out means everyone in the fleet. --sealed
    seals the entries to the readers (a key generation is written at once),
    so --carry groups relay what they cannot read. The rule replaces the
    pattern's earlier one on every node that gets it."""
    option_value(check_pattern, collection, "COLLECTION")
    given = (write, read, carry)
    if clear and (any(g is not None for g in given) or sealed):
        raise click.UsageError("--clear takes no --write, --read, --carry or --sealed")
    if not clear and all(g is None for g in given) and not sealed:
        raise click.UsageError("give --write GROUPS and/or --read GROUPS (or --clear)")
    if carry is not None and not sealed:
        raise click.UsageError("--carry needs --sealed: a carrier of clear entries reads them")
    writers, readers = _names(write, "--write"), _names(read, "--read")
    carriers = _names(carry, "--carry")
    for option, names in (("--write", writers), ("--read", readers), ("--carry", carriers)):
        if names == []:
            raise click.BadParameter("name at least one group", param_hint=option)
    _write("rule", collection=collection, write=writers, read=readers, carry=carriers,
           sealed=sealed or None)  # fmt: skip
    if clear:
        click.echo(f"no rule for {collection}: everyone in the fleet may write and read it")
        return
    w = _who(None if writers is None else tuple(writers))
    r = _who(None if readers is None else tuple(readers))
    more = f"; carry groups {','.join(carriers)}" if carriers else ""
    click.echo(f"rule for {collection}: write {w}; read {r}{more}" + ("; sealed" if sealed else ""))


@click.command("rekey")
@home_option
def fleet_rekey_command() -> None:
    """Write a new key generation for each sealed collection whose current one is
    not sealed to exactly its readers now. Revoke, approve, group and rule do
    this themselves; rekey is for a generation that another admin's change made
    stale."""
    _write(None)


@click.command("rules")
@home_option
@json_option
def fleet_rules_command(as_json: bool) -> None:
    """The per-collection rules of this node's fleet, and the groups' members."""
    home, config, _identity = open_node()
    fleet = _fleet(home)
    with open_store(home, config) as store:
        membership = _membership(store, fleet)
    rules = sorted(membership.rules.values(), key=lambda r: r.pattern)
    groups: dict[str, list[str]] = {}
    for m in membership.members.values():
        if m.approved and not m.revoked:
            for g in m.groups:
                groups.setdefault(g, []).append(str(NodeId(m.node)))
    if as_json:
        print_json({
            "fleet": format_fleet_id(fleet),
            "rules": [_rule_json(r, len(membership.keys.get(r.pattern, []))) for r in rules],
            "groups": {g: sorted(nodes) for g, nodes in sorted(groups.items())},
        })  # fmt: skip
        return
    if not rules:
        click.echo("no rules: every member may write and read every collection")
    for r in rules:
        carry = f"; carry groups {','.join(r.carry)}" if r.carry else ""
        gens = membership.keys.get(r.pattern, [])
        sealed = f"; sealed (key generation {gens[-1].gen if gens else 'none yet'})"
        click.echo(f"{r.pattern}: write {_who(r.write)}; read {_who(r.read)}{carry}"
                   f"{sealed if r.sealed else ''}"
                   f"  (set by {NodeId(r.set_by).fingerprint if r.set_by else '-'})")  # fmt: skip
    for g, nodes in sorted(groups.items()):
        names = ", ".join(NodeId.parse(n).fingerprint for n in sorted(nodes))
        click.echo(f"group {g}: {names}")


def _rule_json(r: Rule, generations: int) -> dict[str, Any]:
    return {
        "collection": r.pattern,
        "write": None if r.write is None else list(r.write),
        "read": None if r.read is None else list(r.read),
        "carry": None if r.carry is None else list(r.carry),
        "sealed": r.sealed,
        "key_generations": generations,
        "set_by": str(NodeId(r.set_by)) if r.set_by else None,
        "ts": r.ts,
    }


@click.command("group")
@home_option
@click.argument("node")
@click.option("--groups", required=True, help="Comma-separated group names ('' for none).")
def fleet_group_command(node: str, groups: str) -> None:
    """Set the groups of NODE (a member, or this admin itself), replacing its
    earlier ones; its role and state stay. Rules name groups, so this is how an
    existing member — or the founder — comes to write or read a ruled collection."""
    names = _names(groups, "--groups") or []
    home, config, _identity = open_node()
    with open_store(home, config) as store:
        membership = _membership(store, _fleet(home))
    key = _resolve(membership, node)
    member = membership.get(key)
    if member is None:
        raise LichenError(f"{NodeId(key)} is not a member of the fleet. Fix: lichen fleet invite")
    _write("add", key, role=member.role, groups=names)
    click.echo(f"{NodeId(key)} is in " + (f"groups {','.join(names)}" if names else "no group"))


def fleet_commands() -> click.Group:
    """``lichen fleet`` with its invite and join commands (:mod:`.fleet_invite`)
    and the rule and group commands of this module."""
    from .fleet import fleet_group
    from .fleet_invite import fleet_invite_command, fleet_join_command

    for command in (
        fleet_invite_command,
        fleet_join_command,
        fleet_rule_command,
        fleet_rules_command,
        fleet_group_command,
        fleet_rekey_command,
    ):
        fleet_group.add_command(command)
    return fleet_group
