"""``lichen status``: what the node is doing, from its last status snapshot and its log."""

from __future__ import annotations

from typing import Any

import click

from ..clock import format_ts
from ..config import Config
from ..identity import Identity, NodeId
from ..store.log_store import LogStore
from .common import (
    agent_status,
    home_option,
    json_option,
    open_node,
    open_store,
    print_json,
)

__all__ = ["status_command"]


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
    where = [f"http://{mule['address']}"] if mule.get("address") else []
    where += ["BLE"] if mule.get("ble") else []
    click.echo(
        f"mule      {' and '.join(where)}, sealed to {sealed}, "
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
