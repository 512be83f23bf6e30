"""``lichen cloud command set | status``: signed, expiring commands to boards.

A command is an entry of this cloud's feed (``_commands``, :mod:`agent.commands`):
written here into the cloud home's log, it reaches the boards with the next
acknowledgement message on their MQTT ``ack`` topic (the running role puts it
there), by gossip, by bundle (``lichen bundle export --collections _commands``)
or by a mule. Each board answers with a ``_commands_result`` document, which
comes back like any of its entries; ``status`` shows them.
"""

from __future__ import annotations

import secrets
import time

import click

from ..cloud_feed import COMMANDS_COLLECTION
from ..commands import MAX_TTL_MS, Command, command_body, parse_assignment
from ..errors import LichenError
from ..identity import NodeId
from ..store.log_store import Draft
from .common import home_option, json_option, node_clock, open_node, open_store, print_json

__all__ = ["command_group"]


@click.group("command")
def command_group() -> None:
    """Signed, expiring commands to boards: change a setting, see what they did."""


def _targets(to: tuple[str, ...], all_boards: bool) -> list[str]:
    """The boards named with --to, or every board this cloud trusts."""
    if all_boards:
        from ..cloud.ingest import admitted_authors
        from ..mesh.trust import TrustStore

        home, config, identity = open_node()
        own = identity.node_id.key
        admitted = admitted_authors(config.cloud, TrustStore(home.trust_file), own) or ()
        boards = sorted(str(NodeId(a)) for a in admitted if a != own)
        if not boards:
            raise LichenError("this cloud trusts no board. Fix: lichen trust add NODE_ID")
        return boards
    if not to:
        raise click.UsageError("name the boards: --to NODE_ID (repeatable) or --all-boards")
    out = []
    for text in to:
        try:
            out.append(str(NodeId.parse(text)))
        except ValueError as exc:
            raise click.UsageError(f"--to {text}: {exc}") from None
    return out


@command_group.command("set")
@home_option
@json_option
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--to", "to", multiple=True, metavar="NODE_ID", help="A board (repeatable).")
@click.option("--all-boards", is_flag=True, help="Every board this cloud trusts.")
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long the command stays valid (90s, 30m, 12h, 7d; at most 30d).",
)
def set_command(
    settings: tuple[str, ...], to: tuple[str, ...], all_boards: bool, ttl: str, as_json: bool
) -> None:
    """Change settings on boards: a sensor's interval, the log's flush interval.

    \b
    lichen --home /srv/lichen-cloud cloud command set sensors.climate.interval=10 --to lc1…
    lichen --home /srv/lichen-cloud cloud command set log.flush_interval=5 --all-boards --ttl 1d

    Each board applies it once, keeps it in its HOME/overrides.toml, and answers
    (lichen cloud command status)."""
    from ..uplink.config import parse_duration

    changes = {}
    for text in settings:
        try:
            key, value = parse_assignment(text)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        changes[key] = value
    try:
        ttl_ms = int(parse_duration(ttl) * 1000)
    except ValueError as exc:
        raise click.UsageError(f"--ttl: {exc}") from None
    if not 0 < ttl_ms <= MAX_TTL_MS:
        raise click.UsageError(f"--ttl {ttl}: between 1s and {MAX_TTL_MS // 86_400_000}d")
    boards = _targets(to, all_boards)
    home, config, identity = open_node()
    ident = f"c-{secrets.token_urlsafe(12)}"
    expires = time.time_ns() // 1_000_000 + ttl_ms
    try:
        body = command_body(Command(ident, tuple(boards), expires, changes))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with open_store(home, config) as store:
        (entry,) = store.append(
            identity, node_clock(store, identity), [Draft(COMMANDS_COLLECTION, body, ident)]
        )
    if as_json:
        print_json({"id": ident, "seq": entry.seq, "expires_ms": expires, "to": boards,
                    "set": changes})  # fmt: skip
        return
    click.echo(f"command {ident}  (seq {entry.seq}), valid {ttl}, to {len(boards)} board(s)")
    click.echo(f"see it: lichen --home {home.path} cloud command status {ident}")


@command_group.command("status")
@home_option
@json_option
@click.argument("ident", required=False, metavar="[ID]")
def status_command(ident: str | None, as_json: bool) -> None:
    """What each board did with this cloud's commands (from the results the boards
    sent back). Without ID: every command held."""
    from ..cloud.orders import command_outcomes

    home, config, identity = open_node()
    with open_store(home, config) as store:
        outcomes = command_outcomes(store, identity.node_id.key)
    if ident is not None:
        outcomes = [o for o in outcomes if o.command.id == ident]
        if not outcomes:
            raise LichenError(f"no command {ident!r} in {home.path}'s log")
    now = time.time_ns() // 1_000_000
    if as_json:
        print_json({"commands": [o.as_json(now) for o in outcomes]})
        return
    if not outcomes:
        click.echo("no commands")
    for outcome in outcomes:
        c = outcome.command
        settings = " ".join(f"{k}={v}" for k, v in c.set.items())
        state = "expired" if c.expires_ms <= now else f"valid {(c.expires_ms - now) // 1000} s"
        click.echo(f"{c.id}  {settings}  ({state})")
        for board, result in outcome.results.items():
            if result is None:
                shown = "no answer yet" if c.expires_ms > now else "no answer (expired)"
            elif result.get("outcome") == "executed":
                shown = "executed"
            else:
                shown = f"refused: {result.get('reason')} ({result.get('detail')})"
            click.echo(f"  {board}  {shown}")
