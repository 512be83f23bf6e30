"""``lichen trust …`` and ``lichen peers``."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..clock import format_ts
from ..errors import LichenError
from ..mesh.peerbook import PeerBook
from ..mesh.trust import TrustStore
from .common import current_home, home_option, json_option, print_json

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
    """Stop trusting NODE_ID (open sessions end at their next handshake)."""
    if not TrustStore(current_home().trust_file).remove(node_id):
        raise LichenError(f"{node_id} was not trusted")
    click.echo(f"no longer trusted: {node_id}")


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
    """The peer book: who this node met, where, and how syncing went."""
    book = PeerBook(current_home().peer_book)
    records = book.all()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in records], indent=2))
        return
    if not records:
        click.echo("(no peers met yet)")
    for r in records:
        seen = format_ts(r.last_seen_ms << 16) if r.last_seen_ms else "never"
        synced = format_ts(r.last_sync_ms << 16) if r.last_sync_ms else "never"
        state = {True: "ok", False: "FAILED", None: "-"}[r.last_sync_ok]
        addresses = ", ".join(a for group in r.addresses.values() for a in group)
        click.echo(
            f"{r.node[:12]}…  seen {seen}  synced {synced} ({state})  "
            f"↓{r.entries_received} ↑{r.entries_sent}  {addresses}"
        )
        if r.last_error and not r.last_sync_ok:
            click.echo(f"      last error: {r.last_error}")
