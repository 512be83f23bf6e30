"""``lichen init``, ``id`` and ``run`` (``status`` is :mod:`.status`)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..aio import run_until_signalled
from ..board import list_boards, load_board, render_starter_config
from ..errors import IdentityError, LichenError, PluginError
from ..fsutil import atomic_write
from ..home import PRIVATE_DIR, PRIVATE_FILE, Home, lost_identity
from ..identity import Identity, load_identity, save_identity
from ..store.log_store import LogStore
from .common import (
    agent_status,
    current_home,
    home_option,
    json_option,
    open_node,
    option_value,
    print_json,
)

__all__ = ["id_command", "init_command", "run_command"]

_F = TypeVar("_F", bound=Callable[..., Any])


@click.command("init")
@home_option
@click.option("--name", help="A label for people (default: the host name).")
@click.option("--board", default="generic", show_default=True, help="Board profile.")
@click.option("--list-boards", "list_only", is_flag=True, help="List board profiles and exit.")
@click.option(
    "--new-identity",
    is_flag=True,
    help="The key is lost: make a new node here, moving the old log aside first.",
)
def init_command(name: str | None, board: str, list_only: bool, new_identity: bool) -> None:
    """Create this node: identity, starter lichen.toml and an empty log."""
    if list_only:
        for b in list_boards():
            click.echo(f"{b:14} {load_board(b).description}")
        return
    home = current_home()
    profile = load_board(board)
    if home.identity.exists():
        existing = load_identity(home.identity)
        raise LichenError(
            f"{home.path} is already node {existing.node_id}; nothing was changed "
            "(a node's identity is never replaced)"
        )
    orphan, old_node = None, home.recorded_node_id()
    problem = lost_identity(home)
    if problem is not None:
        if not new_identity:
            raise IdentityError(problem)
        running = agent_status(home.status_file)
        if running is not None:
            raise LichenError(
                f"an agent (pid {running['pid']}) is running for {home.path}. Fix: stop it first"
            )
        orphan = home.move_log_aside()
    _secure_home(home, echo=True)
    identity = Identity.generate()
    save_identity(identity, home.identity)
    label = name or os.uname().nodename
    if not home.config.exists():
        text = render_starter_config(profile, label, str(identity.node_id))
        atomic_write(home.config, text.encode("utf-8"), mode=PRIVATE_FILE)
    elif orphan is not None and old_node is not None:
        _rename_node_in_config(home, old_node, str(identity.node_id))
    LogStore(home.database).close()
    click.echo(f"node id      {identity.node_id}")
    click.echo(f"fingerprint  {identity.node_id.fingerprint}")
    click.echo(f"home         {home.path}")
    click.echo(f"board        {profile.name}: {profile.description}")
    if orphan is not None:
        click.echo(
            f"old log      moved aside to {orphan.name}, whole (the feed of "
            f"{old_node or 'the node whose key was lost'} and what it held from others); "
            "this node starts an empty log"
        )
        click.echo(
            f"peers        a new node: peers that trusted the old one must trust this one "
            f"(lichen trust add {identity.node_id})"
        )
    click.echo(f"next         lichen --home {home.path} run")


def _rename_node_in_config(home: Home, old: str, new: str) -> None:
    """Name the new node in the first line ``lichen init`` wrote (nothing else changes)."""
    text = home.config.read_text("utf-8")
    first, sep, rest = text.partition("\n")
    data = (first.replace(old, new) + sep + rest).encode("utf-8")
    atomic_write(home.config, data, mode=PRIVATE_FILE)


@click.command("id")
@home_option
@json_option
def id_command(as_json: bool) -> None:
    """Print this node's id."""
    home = current_home()
    node = load_identity(home.identity).node_id
    if as_json:
        print_json({"node_id": str(node), "fingerprint": node.fingerprint})
    else:
        click.echo(str(node))


def _address_option(
    flag: str, dest: str, *, group: str, metavar: str, help: str, listen: bool = False
) -> Callable[[_F], _F]:
    """A repeatable option of link addresses, each parsed by the plugin of ``group``
    serving its scheme."""

    def check(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
        from ..errors import AddressError
        from ..plugins import parse_link_address

        try:
            return [parse_link_address(group, v, listen=listen).url for v in values]
        except (AddressError, PluginError) as exc:
            raise click.BadParameter(str(exc), param=param) from None

    return click.option(flag, dest, multiple=True, metavar=metavar, callback=check, help=help)


@click.command("run")
@home_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@_address_option(
    "--listen",
    "listen",
    group="transports",
    listen=True,
    metavar="tcp://HOST:PORT",
    help="Accept peers here (repeatable: one listener each); replaces the configured "
    "instances of that transport ([[transports.tcp]]), keeping the first one's other keys.",
)
@_address_option(
    "--peer",
    "peers",
    group="transports",
    metavar="tcp://HOST:PORT",
    help="Dial this peer (repeatable); added to the configured peers.",
)
@_address_option(
    "--uplink",
    "uplinks",
    group="uplinks",
    metavar="mqtt://HOST:PORT",
    help="Forward the log to the cloud through this MQTT broker (repeatable); replaces the "
    "configured [[uplinks.mqtt]] instances, keeping the first one's other keys.",
)
@click.option(
    "--mule-http",
    "mule_http",
    metavar="HOST:PORT",
    help="Serve the mule exchange to phones here (the board's Wi-Fi address; port 0: any "
    "free port); replaces [mule] http. See docs/field.md.",
)
@click.option(
    "--http",
    "http",
    metavar="HOST:PORT",
    help="Serve the dashboard, its JSON API and /metrics here (replaces [http] listen; "
    '"off": none). Beyond loopback every request needs the token of `lichen http token`.',
)
def run_command(
    *,
    log_level: str,
    listen: list[str],
    peers: list[str],
    uplinks: list[str],
    mule_http: str | None,
    http: str | None,
) -> None:
    """Run the agent: sensors, batching, the log, gossip with peers, the uplink,
    the mule exchange, the dashboard. Stops cleanly on SIGTERM/SIGINT. Under systemd
    it speaks the notify protocol (READY, STATUS, WATCHDOG, STOPPING): see
    `lichen service install`."""
    import dataclasses

    from ..config.http import with_listen
    from ..logs import setup_logging
    from ..plugins import configure_links
    from ..runtime.agent import Agent
    from ..sdnotify import Notifier

    notifier = Notifier.from_environ()  # and out of the environment our children inherit
    home, config, identity = open_node()
    if http is not None:
        config = dataclasses.replace(config, http=with_listen(config.http, http))
    setup_logging(log_level)  # before the plugins' tables are checked: they may warn
    links = configure_links(config, listen=listen, peers=peers, uplinks=uplinks)
    agent = Agent.from_config(home, config, identity, links)  # plugin config errors stop us here
    agent.notifier = notifier
    if mule_http is not None:
        agent.mule_address = _mule_address(mule_http)
    _secure_home(home)

    asyncio.run(run_until_signalled(agent.run))
    if agent.readings.unwritten:
        raise LichenError(
            f"{agent.readings.unwritten} readings could not be written before the agent "
            f"stopped: {agent.readings.last_write_error}"
        )


def _mule_address(text: str) -> tuple[str, int] | None:
    from ..config.cloud import parse_listen

    return option_value(parse_listen, text, "--mule-http")


def _secure_home(home: Home, *, echo: bool = False) -> None:
    """The home 0700, its configuration and log 0600: made so, or tightened if looser,
    with a line for each change (and a warning with the fix where this user may not
    change a mode). ``echo``: to stderr (``init``), else as log lines (``run``)."""
    from ..logs import event

    log = logging.getLogger("lichen.home")
    home.create()
    changed, failed = home.tighten()
    for path, was, now in changed:
        if echo:
            click.echo(f"permissions tightened: {path} was {was:04o}, now {now:04o}", err=True)
        else:
            event(log, "permissions tightened", path=path, was=f"{was:04o}", now=f"{now:04o}")
    for path, reason in failed:
        fix = f"chmod {PRIVATE_DIR if path == home.path else PRIVATE_FILE:o} {path}"
        if echo:
            click.echo(f"warning: cannot make {path} private ({reason}). Fix: {fix}", err=True)
        else:
            event(log, "cannot make private", logging.WARNING, path=path, error=reason, fix=fix)
