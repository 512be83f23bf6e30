"""``lichen bundle export | import | show``: signed entries in a file, for carrying by hand."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import (
    home_option,
    json_option,
    open_node,
    open_store,
    option_value,
    parse_when,
    print_json,
)

if TYPE_CHECKING:
    from ..bundle.export import Selection
    from ..config import Config
    from ..home import Home
    from ..identity import Identity, NodeId
    from ..store.log_store import LogStore

__all__ = ["bundle_group"]


@click.group("bundle")
def bundle_group() -> None:
    """Move entries by hand: a file of signed entries (a USB stick, a download)."""


@bundle_group.command("export")
@home_option
@json_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--since",
    metavar="BUNDLE|TIME",
    help="Only what a previous BUNDLE file did not include (with its selection), or "
    "entries from TIME on: a duration back from now (12h, 7d) or a date (2026-12-01T08:00).",
)
@click.option(
    "--collections",
    "patterns",
    metavar="PATTERNS",
    multiple=True,
    help="Only these collections: comma-separated, shell-style (readings/*,events/door).",
)
@click.option("--seal-to", metavar="CLOUD_ID", help="Seal the content for this cloud's node id.")
@click.option(
    "--for",
    "for_node",
    metavar="NODE_ID",
    help="The bundle is for this node: leave out the collections the fleet's rules do not "
    "let it read.",
)
@click.option("--max-size", metavar="SIZE", help="Stop before the file passes SIZE (64MB, 1G).")
def export_command(
    *,
    file: Path,
    since: str | None,
    patterns: tuple[str, ...],
    seal_to: str | None,
    for_node: str | None,
    max_size: str | None,
    as_json: bool,
) -> None:
    """Write this node's entries (its own and those it carries) to a bundle FILE.

    \b
    lichen bundle export /media/usb/site-a.lcb
    lichen bundle export --since /media/usb/site-a.lcb /media/usb/site-a-2.lcb
    lichen bundle export --collections 'readings/*' --since 7d week.lcb
    lichen bundle export --seal-to lc1… sealed.lcb    # only that cloud can read it
    lichen bundle export --for lc1… peer.lcb          # what that member may read

    Without --for the bundle holds every collection (this node's copy: a
    backup, a stick to the cloud); with --for, on a node in a fleet, the
    collections that node may not read are left out, as a sync would (this
    node's clouds, [retention] ack_from, read everything). The file is
    written as FILE.part and renamed when complete. Exit code 1 if it cannot
    be written."""
    from ..bundle.export import export_bundle
    from ..identity import NodeId
    from ..uplink.config import parse_size

    selection = _selection(since, _split(patterns))
    cloud = option_value(NodeId.parse, seal_to, "--seal-to")
    limit = option_value(parse_size, max_size, "--max-size")
    peer = option_value(NodeId.parse, for_node, "--for")
    home, config, identity = open_node()
    with open_store(home, config) as store, _bar("exporting", store.totals()[0], as_json) as bar:
        readable, left_out = _readable_by(peer, home, config, identity, store)
        report = export_bundle(store, identity, file, selection, seal_to=cloud, max_size=limit,
                               progress=bar, readable=readable)  # fmt: skip
    if as_json:
        print_json({**report.as_json(), "for": for_node, "left_out": left_out})
        return
    m = report.manifest
    sealed = f", sealed to {cloud.short}… ({cloud.fingerprint})" if cloud else ""
    click.echo(
        f"exported {m.entries} entries of {len(m.feeds)} feeds to {file} "
        f"({report.file_bytes} bytes{sealed}) in {report.seconds:.2f} s"
    )
    if left_out:
        click.echo(
            f"left out {len(left_out)} collections {peer} may not read (the fleet's rules): "
            + ", ".join(left_out)
        )
    if not report.complete:
        again = "" if peer is None else f" --for {peer}"
        click.echo(
            f"stopped at --max-size: continue with `lichen bundle export --since {file}{again} "
            "NEXT_FILE`"
        )


def _readable_by(
    peer: NodeId | None, home: Home, config: Config, identity: Identity, store: LogStore
) -> tuple[Callable[[str], bool] | None, list[str]]:
    """What ``peer`` may read of this node's log — None: everything (no --for, no
    fleet, or one of this node's clouds) — and the collections left out."""
    from ..fleet import FleetPolicy, FleetView, read_fleet_file
    from ..uplink.acks import AckLedger

    fleet = None if peer is None else read_fleet_file(home.fleet_file)
    if peer is None or fleet is None:
        return None, []
    own = identity.node_id.key
    if AckLedger(store, config.retention.ack_from, home.state / "clouds", own).is_cloud(peer.key):
        return None, []
    policy = FleetPolicy(FleetView(store, fleet))

    def readable(collection: str) -> bool:
        return policy.may_read(peer.key, collection)

    return readable, sorted(name for name, _ in store.collections() if not readable(name))


@bundle_group.command("import")
@home_option
@json_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(file: Path, as_json: bool) -> None:
    """Verify a bundle FILE whole, then store its entries (on a board, a laptop,
    or a cloud home, where they are admitted as the cloud admits uploads).

    Importing again stores nothing twice. A truncated, corrupt or forged bundle,
    or one sealed to another node, is refused with the reason (exit code 1) and
    nothing is stored; entries refused one by one (a fork, this node's rules)
    are counted and named (exit code 1). On a node in a fleet, the fleet's
    access policy decides what is stored, as in a sync (docs/fleet.md)."""
    from ..bundle.importer import import_into_store
    from ..bundle.seal import Opener

    home, config, identity = open_node()
    if config.node.role == "cloud":
        from ..cloud.bundles import import_into_cloud

        report = import_into_cloud(file, home, config, identity)
    else:
        from ..bundle.importer import read_manifest
        from ..fleet import FleetPolicy, FleetView, read_fleet_file
        from ..sync import ALLOW_ALL, AccessPolicy

        total = 2 * read_manifest(file)[1].entries
        fleet = read_fleet_file(home.fleet_file)
        with open_store(home, config) as store, _bar("verifying, storing", total, as_json) as bar:
            # a node in a fleet stores a bundle's entries as a sync session would
            policy: AccessPolicy = (
                ALLOW_ALL if fleet is None else FleetPolicy(FleetView(store, fleet))
            )
            report = import_into_store(
                file, store, opener=Opener(identity), policy=policy, progress=bar
            )
    if as_json:
        print_json(report.as_json())
    else:
        click.echo(
            f"imported {file} from {_node(report.manifest.exporter)}: "
            f"{report.manifest.entries} entries, {report.stored} new, {report.held} already held, "
            f"{report.refused + report.refused_by_policy} refused, in "
            f"{report.verify_seconds + report.store_seconds:.2f} s"
        )
        for reason in report.reasons:
            click.echo(f"lichen: refused {reason}", err=True)
    if report.refused:
        sys.exit(1)


@bundle_group.command("show")
@home_option
@json_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show_command(file: Path, as_json: bool) -> None:
    """What a bundle FILE says it holds (its signed manifest; not verified entry by
    entry — `lichen bundle import` does that). Needs no home."""
    from ..bundle.importer import read_manifest

    header, m = read_manifest(file)
    sealed = None if header.recipient is None else _node(header.recipient)
    if as_json:
        print_json(
            {
                "file": str(file),
                "bundle_id": m.bundle_id.hex(),
                "exporter": _node(m.exporter),
                "created_ms": m.created_ms,
                "sealed_to": sealed,
                "entries": m.entries,
                "entry_bytes": m.entry_bytes,
                "chunks": m.chunks,
                "selection": m.selection,
                "feeds": [
                    {"node_id": str(s.node_id), "first": s.first, "last": s.last,
                     "entries": s.count, "bytes": s.bytes}
                    for s in m.feeds
                ],
            }
        )  # fmt: skip
        return
    created = datetime.fromtimestamp(m.created_ms / 1000).isoformat(timespec="seconds")
    click.echo(f"bundle    {m.bundle_id.hex()}  made {created} by {_node(m.exporter)}")
    click.echo(f"sealed    {'to ' + sealed if sealed else 'no (anyone can read it)'}")
    click.echo(f"entries   {m.entries} ({m.entry_bytes} bytes) in {m.chunks} chunks")
    for span in m.feeds:
        click.echo(f"  {span.node_id}  seq {span.first}…{span.last}  ({span.count} entries)")


@contextlib.contextmanager
def _bar(what: str, total: int, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal's stderr for long work (None: no bar)."""
    if quiet or total < 5000 or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda done: progress.update(task, completed=done)


def _node(key: bytes) -> str:
    from ..identity import NodeId

    node = NodeId(key)
    return f"{node} ({node.fingerprint})"


def _split(patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.strip() for text in patterns for p in text.split(",") if p.strip())


def _selection(since: str | None, patterns: tuple[str, ...]) -> Selection:
    from ..bundle.export import Selection
    from ..bundle.importer import read_manifest
    from ..clock import pack

    if since is None:
        return Selection(patterns)
    path = Path(since)
    if path.is_file():
        _, previous = read_manifest(path)
        continuing = Selection.continuing(previous)
        if patterns:
            return Selection(patterns, continuing.since_ts, continuing.after)
        return continuing
    ms = parse_when(since, "--since", also="a bundle file, ")
    return Selection(patterns, pack(max(ms, 0)))
