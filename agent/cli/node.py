"""``lichen init``, ``id``, ``run`` and ``status``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..aio import run_until_signalled
from ..board import list_boards, load_board, render_starter_config
from ..clock import format_ts
from ..config import Config
from ..errors import IdentityError, LichenError, PluginError
from ..fsutil import atomic_write
from ..home import PRIVATE_DIR, PRIVATE_FILE, Home, lost_identity
from ..identity import Identity, NodeId, load_identity, save_identity
from ..store.log_store import LogStore
from .common import (
    agent_status,
    current_home,
    home_option,
    json_option,
    open_node,
    open_store,
    print_json,
)

__all__ = ["id_command", "init_command", "run_command", "status_command"]

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

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mule-http") from None


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


def _status() -> dict[str, Any]:
    home, config, identity = open_node()
    me = identity.node_id
    with open_store(home, config) as store:
        heads = store.heads()
        entries, size = store.totals()
        status: dict[str, Any] = {
            "node_id": str(me),
            "fingerprint": me.fingerprint,
            "name": config.node.name,
            "role": config.node.role,
            "home": str(home.path),
            "entries": entries,
            "bytes": size,
            "change": store.last_change(),
            "collections": dict(store.collections()),
            "feeds": [
                {
                    "author": str(NodeId(h.author)),
                    "own": h.author == me.key,
                    "head_seq": h.seq,
                    "head_hash": h.hash.hex(),
                    "head_time": format_ts(h.ts),
                    "low_seq": h.low_seq,
                    "entries": h.entries,
                    "bytes": h.bytes,
                }
                for h in heads
            ],
            "forks": len(store.forks()),
            "acked": {str(NodeId(a)): seq for a, seq in store.delivery.acked().items()},
            "agent": agent_status(home.status_file),
            # carried from the boot partition by `lichen firstboot`; joining comes later
            "fleet_invite": "pending" if (home.state / "fleet-invite.pending").exists() else None,
        }
        status["cloud"] = _cloud_status(config, identity, store, status["agent"])
    return status


def _cloud_status(
    config: Config, identity: Identity, store: LogStore, running: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A cloud home's per-feed view (see ``agent.cloud.status``); None elsewhere."""
    from ..cloud.status import cloud_status, is_cloud_home

    if not is_cloud_home(config, running):
        return None
    return cloud_status(config, identity, store, running)


@click.command("status")
@home_option
@json_option
def status_command(as_json: bool) -> None:
    """What this node holds and what its agent is doing."""
    status = _status()
    if as_json:
        print_json(status)
        return
    click.echo(f"node      {status['node_id']}  ({status['fingerprint']})  {status['name']}")
    click.echo(f"home      {status['home']}")
    click.echo(
        f"log       {status['entries']} entries, {status['bytes']} bytes, "
        f"change {status['change']}, {status['forks']} forks recorded"
    )
    if status.get("fleet_invite") == "pending":
        click.echo(
            "fleet     an invite from the boot partition is pending (joining is not available yet)"
        )
    agent = status["agent"]
    if agent is None:
        click.echo("agent     not running")
    elif agent.get("role") == "cloud":
        _echo_age(agent)
        _echo_cloud_agent(agent)
    else:
        _echo_age(agent)
        logs = agent["log"]
        click.echo(
            f"agent     running (pid {agent['pid']}), {logs['readings_stored']} readings "
            f"stored, {logs['readings_pending']} pending, {logs['readings_dropped']} "
            f"dropped, {logs.get('readings_rejected', 0)} rejected, "
            f"{logs['write_errors']} write errors"
        )
        if logs["write_errors"]:
            click.echo(f"  last write error: {logs['last_write_error']}")
        sync = agent.get("sync")
        if sync:
            click.echo(
                f"sync      {len(sync['sessions'])} sessions open, "
                f"{sync['sessions_completed']} completed, {sync['sessions_failed']} failed, "
                f"{sync['peers_known']} peers known"
            )
            _echo_transports(sync.get("transports", []))
            gate = sync.get("admission") or {}
            refused = sum(gate.get(k, 0) for k in ("refused_busy", "refused_rate", "refused_host"))
            if refused:
                click.echo(
                    f"  handshakes  {gate['admitted']} admitted, {refused} refused (busy "
                    f"{gate['refused_busy']}, rate {gate['refused_rate']}, per host "
                    f"{gate['refused_host']}), {gate['evicted']} evicted, peak {gate['peak']}"
                )
            for t in sync["sessions"]:
                click.echo(
                    f"  peer    {t['peer'][:16]}…  {t['direction']:<3} {t['address']}  "
                    f"sent {t['entries_sent']}  received {t['entries_received']}"
                )
        _echo_uplink(agent.get("uplink"))
        _echo_mule(agent.get("mule"))
        for s in agent["sensors"]:
            _echo_sensor(s)
    _echo_cloud(status.get("cloud"))
    click.echo("feeds")
    for f in status["feeds"]:
        mine = " (this node)" if f["own"] else ""
        click.echo(
            f"  {f['author'][:12]}…  head {f['head_seq']:>8}  {f['entries']:>8} entries  "
            f"{f['head_time']}{mine}"
        )


def _echo_transports(transports: list[dict[str, Any]]) -> None:
    for t in transports:
        where = t.get("address") or ""
        if t.get("state") == "retrying":
            retry = t.get("retry_at_ms")
            when = f", next attempt at {format_ts(retry << 16)}" if retry else ""
            where = f"{t.get('error')} (attempt {t.get('failures')}{when})"
        click.echo(f"  link    {t['name']:<14} {t.get('state', '?'):<9} {where}")


def _echo_age(agent: dict[str, Any]) -> None:
    """How old the snapshot is; a stale one says so before its numbers."""
    age = agent.get("age_s")
    if agent.get("stale"):
        shown = "of unknown age" if age is None else f"{age:.0f} s old"
        click.echo(
            f"status    status is {shown} — is the agent running? (pid {agent['pid']}; "
            "the numbers below are from then)"
        )
    elif age is not None:
        click.echo(f"status    {age:.0f} s old")


def _echo_sensor(s: dict[str, Any]) -> None:
    state = s["state"]
    if s.get("stuck_in"):
        state = f"{state} in {s['stuck_in']} for {s['stuck_for_s']:.0f} s"
    click.echo(
        f"  sensor  {s['name']:<14} {state:<10} {s['readings']:>8} readings"
        f"  restarts {s['restarts']}"
        + (f"  refused {s['refused']}" if s.get("refused") else "")
        + (f"  sample errors {s['sample_errors']}" if s.get("sample_errors") else "")
    )
    if s["last_error"]:
        click.echo(f"          last error: {s['last_error']}")
    if s.get("refused"):
        click.echo(f"          last refused: {s['last_refused']}")
    if s.get("sample_errors"):
        click.echo(f"          last sample error: {s['last_sample_error']}")


def _echo_mule(mule: dict[str, Any] | None) -> None:
    if not mule:
        return
    sealed = mule["sealed_to"][:16] + "…" if mule["sealed_to"] else "no cloud"
    click.echo(
        f"mule      http://{mule['address']}, sealed to {sealed}, "
        f"{mule['bundles']} bundles ({mule['bundle_entries']} entries) out, "
        f"{mule['handovers']} handovers ({mule['handover_entries']} entries) in, "
        f"{mule['refused']} refused, {mule['rate_limited']} rate-limited"
    )


def _echo_uplink(uplink: dict[str, Any] | None) -> None:
    if not uplink:
        return
    backlog, dropped, last = uplink["backlog"], uplink["dropped"], uplink["last_ack"]
    age = backlog.get("oldest_unacked_age_s")
    click.echo(
        f"uplink    {'connected' if uplink['connected'] else 'not connected'}, backlog "
        f"{backlog.get('entries', 0)} entries / {backlog.get('bytes', 0)} bytes"
        + (f", oldest unacknowledged {age} s old" if age is not None else "")
    )
    if last:
        click.echo(f"  last ack  {last['feed'][:12]}… seq {last['seq']} at {last['at_ms']} ms")
    if uplink.get("ack_from") == "none" and uplink["uplinks"]:
        click.echo(
            "  no cloud's acknowledgements are accepted: nothing uploaded is pruned. "
            'Fix: [retention] ack_from = ["lc1…"] (the id lichen cloud prints)'
        )
    refused = {k: n for k, n in (uplink.get("refused") or {}).items() if n}
    if refused:
        click.echo("  refused   " + ", ".join(f"{n} {k}" for k, n in sorted(refused.items())))
    if dropped.get("entries"):
        click.echo(
            f"  dropped   {dropped['entries']} entries ({dropped['bytes']} bytes) in "
            f"{dropped['records']} drop records to stay within the disk quota"
        )
    for u in uplink["uplinks"]:
        state = "connected" if u["connected"] else "down"
        click.echo(f"  {u['name']:<9} {state:<9} {u['detail'] or ''}  sent {u['sent_entries']}")


def _echo_cloud_agent(agent: dict[str, Any]) -> None:
    cloud = agent["cloud"]
    broker = cloud["broker"]
    click.echo(
        f"cloud     running (pid {agent['pid']}), {cloud['messages']} batches, "
        f"{cloud['entries_stored']} entries stored, {cloud['duplicates']} duplicates, "
        f"{cloud['entries_rejected']} entries and {cloud['messages_rejected']} batches rejected"
    )
    click.echo(
        f"  broker  {broker['url']} {'connected' if broker['connected'] else 'not connected'}"
        f"  {broker['subscription']}  http {cloud['http'] or 'off'}"
    )


def _echo_cloud(cloud: dict[str, Any] | None) -> None:
    if not cloud:
        return
    if "error" in cloud:
        click.echo(f"cloud     sink {cloud['sink']}: {cloud['error']}")
        return
    click.echo(f"cloud     sink {cloud['sink']}: {cloud['entries']} entries held")
    for f in cloud["feeds"]:
        click.echo(
            f"  {f['node_id'][:12]}…  head {f['head_seq']:>8}  {f['entries']:>8} entries  "
            f"contiguous {f['contiguous_seq']:>8}  acked {f['acked_seq']:>8}"
        )
