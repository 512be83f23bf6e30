"""``lichen fleet invite | join``: a new node comes into the fleet.

An admin's node makes a one-time invite (a short code, and a QR code if segno
is installed) and, with ``--wait``, stays until it is used; the new node dials
the inviting node's running agent with the code (Noise XXpsk3 keyed by it),
and both show the same 6-digit code to compare before ``lichen fleet
approve``. The handshake and what the inviter serves are :mod:`agent.fleet.join`
and :mod:`agent.fleet.invites`; see docs/fleet.md.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from typing import Any

import click

from ..errors import LichenError
from ..fleet import ROLES, InviteBook, format_fleet_id, read_fleet_file
from ..home import Home
from ..identity import Identity, NodeId
from .common import agent_status, home_option, json_option, open_node, open_store, print_json
from .fleet import _fleet, _membership, _require_admin

__all__ = ["fleet_invite_command", "fleet_join_command"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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


@click.command("invite")
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
def fleet_invite_command(as_json: bool, role: str, groups: str, expires: str, wait: bool) -> None:
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


@click.command("join")
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
def fleet_join_command(code: str, peer: str, as_json: bool, timeout: float) -> None:
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
