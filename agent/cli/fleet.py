"""``lichen fleet init | invite | join | approve | revoke | admin | members``."""

from __future__ import annotations

import asyncio
import io
import re
import time
from typing import Any

import click

from ..entry import Entry
from ..errors import LichenError
from ..fleet import (
    COLLECTION,
    ROLES,
    FleetView,
    InviteBook,
    Member,
    Membership,
    fleet_id_of,
    format_fleet_id,
    op_body,
    read_fleet_file,
    write_fleet_file,
)
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

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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


def _duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(
            f"{text!r} is not a duration like 90s, 30m, 1h or 2d", param_hint="--expires"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def _qr(text: str) -> str | None:
    """The QR code of ``text`` as terminal block characters, if segno is installed."""
    try:
        import segno  # the optional [qr] extra
    except ImportError:
        return None
    out = io.StringIO()
    segno.make(text, error="m", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue()


@fleet_group.command("invite")
@home_option
@json_option
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@click.option("--groups", default="", help="Comma-separated group names for the new node.")
@click.option(
    "--expires",
    "expires",
    default="1h",
    show_default=True,
    help="How long the code works: 90s, 30m, 1h, 2d.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Stay until the code is used (or expires) and show the joiner and its 6-digit code.",
)
def fleet_invite(as_json: bool, role: str, groups: str, expires: str, wait: bool) -> None:
    """A one-time invite for a new node: a short code (and a QR code), single use,
    expiring. The new node runs `lichen fleet join CODE --peer ADDRESS` against
    this node's running agent; both then show a 6-digit code to compare."""
    ttl = _duration(expires)
    home, config, identity = open_node()
    fleet = _fleet(home)
    with open_store(home, config) as store:
        _require_admin(_membership(store, fleet), identity)
    names = [g.strip() for g in groups.split(",") if g.strip()]
    invite = InviteBook(home.invites_file).create(role, names, ttl)
    expires_at = time.strftime("%H:%M:%S", time.localtime(invite.expires_ms / 1000))
    if as_json:
        print_json({"code": invite.code, "invite": invite.id, "fleet": format_fleet_id(fleet),
                    "role": role, "groups": names, "expires_ms": invite.expires_ms})  # fmt: skip
    else:
        click.echo(f"invite {invite.id} to fleet {format_fleet_id(fleet)} as {role}"
                   + (f" (groups: {', '.join(names)})" if names else ""))  # fmt: skip
        qr = _qr(invite.code)
        if qr:
            click.echo(qr, nl=False)
        click.echo(f"code: {invite.code}   (single use, expires at {expires_at})")
        if not qr:
            click.echo("(for a QR code too: pip install 'lichen[qr]')")
        click.echo("on the new node: lichen fleet join CODE --peer ADDRESS-OF-THIS-NODE")
    if agent_status(home.status_file) is None:
        click.echo(
            "note: no agent runs for this home; start `lichen run` so the new node can join",
            err=True,
        )
    if wait:
        _wait_for_join(InviteBook(home.invites_file), invite.id, as_json)


def _wait_for_join(book: InviteBook, invite_id: str, as_json: bool) -> None:
    if not as_json:
        click.echo("waiting for the new node to join …")
    while True:
        invite = book.get(invite_id)
        if invite is None:
            raise LichenError(f"invite {invite_id} is gone from {book.path}")
        if invite.used_by is not None:
            if as_json:
                print_json({"joined": invite.used_by, "sas": invite.sas, "invite": invite.id})
            else:
                node = NodeId.parse(invite.used_by)
                click.echo(f"joined: {node} ({node.fingerprint})")
                click.echo(f"code: {invite.sas}   — the new node must show the same 6 digits")
                click.echo(f"if it does: lichen fleet approve {node}")
            return
        if time.time_ns() // 1_000_000 >= invite.expires_ms:
            raise LichenError(f"invite {invite_id} expired unused")
        time.sleep(0.2)


@fleet_group.command("join")
@home_option
@json_option
@click.argument("code")
@click.option(
    "--peer",
    "peer",
    required=True,
    metavar="ADDRESS",
    help="The inviting node, e.g. tcp://192.168.1.20:7400.",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds before giving up.")
def fleet_join(code: str, peer: str, as_json: bool, timeout: float) -> None:
    """Join a fleet with an admin's invite CODE: dial the inviting node at
    --peer, run the invite handshake (Noise XXpsk3 keyed by the code), store the
    fleet document. Compare the 6-digit code with the inviting node's."""
    from ..fleet import InviteError, invite_psk, parse_code
    from .sync import parse_transport_address

    try:
        secret = parse_code(code)
    except InviteError as exc:
        raise click.BadParameter(str(exc), param_hint="CODE") from None
    plugin, cls, address = parse_transport_address(peer, "--peer")
    home, config, identity = open_node()
    existing = read_fleet_file(home.fleet_file)
    if existing is not None:
        raise LichenError(f"this node is already in fleet {format_fleet_id(existing)}")
    target = (plugin, cls, address)
    joined = asyncio.run(
        _join(home, config, identity, target, psk=invite_psk(secret), timeout=timeout)
    )
    if as_json:
        print_json({"fleet": joined.fleet_text, "inviter": joined.inviter, "sas": joined.sas,
                    "role": joined.role, "entries_stored": joined.stored})  # fmt: skip
        return
    click.echo(f"joined fleet {joined.fleet_text} through {joined.inviter}")
    click.echo(f"code: {joined.sas}   — the inviting node must show the same 6 digits")
    click.echo(f"this node syncs now; its writes count once an admin approves it: "
               f"lichen fleet approve {identity.node_id}")  # fmt: skip


async def _join(
    home: Home, config: Any, identity: Identity, target: tuple[str, Any, str], *, psk: bytes,
    timeout: float,
) -> Any:  # fmt: skip
    from ..channel import ChannelRejected, open_channel
    from ..errors import ChannelError, TransportError
    from ..fleet.join import join_over
    from .sync import dialling_transport

    plugin, cls, address = target
    me = identity.node_id

    def trust(peer: NodeId) -> str | None:  # the invite key proves the inviter (see docs/fleet.md)
        return "it is this node itself" if peer == me else None

    transport = dialling_transport(plugin, cls, config, identity)
    try:
        async with asyncio.timeout(timeout):
            stream = await transport.connect(address)
            try:
                channel = await open_channel(stream, identity, initiator=True, trust=trust, psk=psk)
            except ChannelRejected as exc:
                raise LichenError(
                    f"the invite handshake with {address} failed ({exc.reason}): a wrong code, "
                    "or that node does not hold this invite (not the inviter, or no agent runs)"
                ) from None
            with open_store(home, config) as store:
                return await join_over(channel, me.key, store, home.fleet_file)
    except TimeoutError:
        raise LichenError(f"joining through {address} did not finish within {timeout} s") from None
    except (TransportError, ChannelError) as exc:
        raise LichenError(f"joining through {address} failed: {exc}") from None


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
    for ignored in after.ignored:
        if ignored.hash == entry.hash:  # e.g. revoking the last admin: nothing changed
            raise LichenError(f"{entry.where} was written but does not count: {ignored.reason}")
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
