"""``lichen sync ADDRESS``: one sync with one peer, then exit."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import click

from ..errors import LichenError, PluginError
from .common import home_option, json_option, open_node, print_json

__all__ = ["dialling_transport", "parse_transport_address", "sync_command"]


@click.command("sync")
@home_option
@json_option
@click.argument("address")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds before giving up.")
def sync_command(address: str, as_json: bool, timeout: float) -> None:
    """Sync once with the node at ADDRESS (e.g. tcp://192.168.1.20:7400; the port
    is 7400 when left out): fetch what it has that this node lacks, give what it
    lacks, print a summary. Works while this node's agent runs.

    Both nodes must trust each other (`lichen trust add`, or members of one
    fleet). Exit code 1 if the sync failed."""
    plugin, cls, address = parse_transport_address(address, "ADDRESS")
    summary = asyncio.run(
        _sync(plugin, cls, address, timeout, progress=not as_json and sys.stderr.isatty())
    )
    if as_json:
        print_json(summary)
    else:
        click.echo(
            f"synced with {summary['peer']} ({summary['sas']}): "
            f"received {summary['entries_received']} entries ({summary['entries_stored']} new), "
            f"sent {summary['entries_sent']}, {summary['bytes_received']} bytes in / "
            f"{summary['bytes_sent']} bytes out, {summary['seconds']:.2f} s"
        )
    if summary["error"]:
        click.echo(f"lichen: sync failed: {summary['error']}", err=True)
        sys.exit(1)


def parse_transport_address(address: str, hint: str) -> tuple[str, Any, str]:
    """``(plugin, transport class, normalised address)``; a bad one is a usage error."""
    from ..errors import AddressError
    from ..plugins import link_plugin

    try:
        plugin, cls = link_plugin("transports", address)
        return plugin, cls, cls.parse_address(address).url
    except (AddressError, PluginError) as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def dialling_transport(plugin: str, cls: Any, config: Any, identity: Any) -> Any:
    """An instance of transport ``plugin`` that only dials out, configured like
    the node's first instance of it; never started."""
    from ..mesh.gossip import GossipContext
    from ..plugins import configure_plugin

    tables = [(i, t) for p, i, t in config.instances("transports") if p == plugin][:1]
    base = [configure_plugin("transports", plugin, i, t, config.path) for i, t in tables]
    context = GossipContext("sync", logging.getLogger("lichen.sync"), identity.node_id, lambda: "")
    return cls(cls.config_for("sync", None, base[0].config if base else None), context)


async def _sync(
    plugin: str, cls: Any, address: str, timeout: float, *, progress: bool
) -> dict[str, Any]:
    from ..channel import UntrustedPeer, open_channel
    from ..fleet import FleetPolicy, FleetView, read_fleet_file
    from ..mesh.session import SessionLog, SessionReport, SyncSession
    from ..mesh.trust import TrustPolicy, TrustStore
    from ..node import Node
    from ..sync import ALLOW_ALL

    home, config, identity = open_node()
    transport = dialling_transport(plugin, cls, config, identity)

    node = Node.for_home(home, config, identity)
    await node.start()
    fleet_id = read_fleet_file(home.fleet_file)
    fleet = None if fleet_id is None else FleetView(node.reader, fleet_id)
    trust = TrustPolicy(
        TrustStore(home.trust_file), accept_any=config.mesh.accept == "any",
        own=identity.node_id, fleet=fleet,
    )  # fmt: skip
    bar = _Progress() if progress else None
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            stream = await transport.connect(address)
            try:
                channel = await open_channel(stream, identity, initiator=True, trust=trust.decide)
            except UntrustedPeer as exc:
                raise LichenError(
                    f"the node at {address} is {exc.peer} ({exc.peer.fingerprint}), which is not "
                    f"trusted here. Fix: if that is the node you meant (its `lichen id` "
                    f"shows the same fingerprint), lichen trust add {exc.peer}"
                ) from None
            session = SyncSession(
                channel,
                SessionLog(node.reader, node.writer),
                identity.node_id,
                role=config.node.role,
                live=False,
                stall_timeout=config.mesh.stall_timeout,
                on_progress=bar.update if bar else None,
                policy=ALLOW_ALL if fleet is None else FleetPolicy(fleet),
            )
            report: SessionReport = await session.run()
    except TimeoutError:
        raise LichenError(f"the sync with {address} did not finish within {timeout} s") from None
    finally:
        if bar:
            bar.done()
        await node.close()
    return {
        "peer": report.peer,
        "address": address,
        "sas": channel.sas,
        "entries_sent": report.entries_sent,
        "entries_received": report.entries_received,
        "entries_stored": report.entries_stored,
        "bytes_sent": report.sync_bytes_sent,
        "bytes_received": report.sync_bytes_received,
        "seconds": round(time.monotonic() - started, 3),
        "error": report.error
        or (f"the peer said: {report.peer_error}" if report.peer_error else None),
    }


class _Progress:
    """A progress bar on stderr: entries stored of those asked for."""

    def __init__(self) -> None:
        self._last = 0.0

    def update(self, report: Any) -> None:
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        total = max(report.entries_wanted, report.entries_received, 1)
        done = report.entries_received
        width = 30
        filled = int(width * min(done, total) / total)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done}/{total} entries, {report.seconds or 0:.0f} s")
        sys.stderr.flush()

    def done(self) -> None:
        if self._last:
            sys.stderr.write("\n")
