"""``lichen trust …`` and ``lichen peers``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import click

from ..clock import format_ts
from ..config import load_config
from ..errors import LichenError
from ..home import Home
from ..mesh.peerbook import PeerBook, PeerRecord
from ..mesh.trust import TrustStore
from .common import agent_status, current_home, home_option, json_option, print_json

__all__ = ["peers_command", "trust_group"]


@click.group("trust")
def trust_group() -> None:
    """Which nodes may connect to this one."""


@trust_group.command("add")
@home_option
@click.argument("node_id")
@click.option("--label", default="", help="A name for people, e.g. the board's location.")
def trust_add(node_id: str, label: str) -> None:
    """Trust NODE_ID (its `lichen id`): it may connect and sync (on a cloud: its
    batches are stored)."""
    entry = TrustStore(current_home().trust_file).add(node_id, label)
    click.echo(f"trusted {entry.node}" + (f" ({entry.label})" if entry.label else ""))


@trust_group.command("remove")
@home_option
@click.argument("node_id")
def trust_remove(node_id: str) -> None:
    """Stop trusting NODE_ID: a running agent ends its sessions with it within
    seconds and admits no new one."""
    home = current_home()
    if not TrustStore(home.trust_file).remove(node_id):
        raise LichenError(f"{node_id} was not trusted")
    click.echo(f"no longer trusted: {node_id}")
    if agent_status(home.status_file) is not None:
        click.echo("the running agent ends its sessions with it within a few seconds")


@trust_group.command("list")
@home_option
@json_option
def trust_list(as_json: bool) -> None:
    """The trusted node ids."""
    trusted = TrustStore(current_home().trust_file).all()
    if as_json:
        print_json([{"node": t.node, "label": t.label, "added_ms": t.added_ms} for t in trusted])
        return
    for t in trusted:
        click.echo(f"{t.node}  {t.label}")
    if not trusted:
        click.echo("(nobody is trusted yet: lichen trust add NODE_ID)")


@click.command("peers")
@home_option
@json_option
def peers_command(as_json: bool) -> None:
    """The peer book: who this node met, where, and how syncing went; with the
    agent running, the sessions open now and what they moved so far."""
    home = current_home()
    records = {r.node: r for r in PeerBook(home.peer_book).all()}
    running = agent_status(home.status_file)
    sessions: dict[str, list[dict[str, Any]]] = {}
    for s in ((running or {}).get("sync") or {}).get("sessions", []):
        sessions.setdefault(s["peer"], []).append(s)
    for node in sessions:  # met since the book was last written
        records.setdefault(node, PeerRecord(node))
    trusted = _trusted(home)
    if as_json:
        out = [asdict(r) | {"sessions": sessions.get(r.node, []),
                            "trusted": trusted is None or r.node in trusted}
               for r in sorted(records.values(), key=lambda r: r.node)]  # fmt: skip
        click.echo(json.dumps(out, indent=2))
        return
    if not records:
        click.echo("(no peers met yet)")
    now_ms = time.time_ns() // 1_000_000
    for r in sorted(records.values(), key=lambda r: r.node):
        seen = format_ts(r.last_seen_ms << 16) if r.last_seen_ms else "never"
        synced = format_ts(r.last_sync_ms << 16) if r.last_sync_ms else "never"
        state = {True: "ok", False: "FAILED", None: "-"}[r.last_sync_ok]
        addresses = ", ".join(a for group in r.addresses.values() for a in group)
        mark = "" if trusted is None or r.node in trusted else "  [not trusted]"
        click.echo(
            f"{r.node[:12]}…  seen {seen}  synced {synced} ({state})  "
            f"↓{r.entries_received} ↑{r.entries_sent}  {addresses}{mark}"
        )
        for s in sessions.get(r.node, []):
            age = max(0, now_ms - s["since_ms"]) // 1000
            kind = "live" if s.get("live") else "syncing"
            click.echo(
                f"      now: {kind} since {format_ts(s['since_ms'] << 16)} ({age} s), "
                f"↓{s['entries_received']} ↑{s['entries_sent']} this session, "
                f"{s['direction']} {s['address']}"
            )
        if r.last_error and not r.last_sync_ok:
            click.echo(f"      last error: {r.last_error}")


def _trusted(home: Home) -> set[str] | None:
    """Who may connect: the trust store, or None (everyone) under ``accept = "any"``."""
    try:
        if load_config(home.config).mesh.accept == "any":
            return None
    except LichenError:
        pass
    return {t.node for t in TrustStore(home.trust_file).all()}
