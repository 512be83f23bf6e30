"""``lichen log append | export | tail | get | verify``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import click

from ..errors import LichenError
from ..readings import SENSORS_COLLECTION, is_reading_batch
from ..store.log_store import Draft
from ..store.verify import verify_log
from .common import (
    home_option,
    json_option,
    node_clock,
    open_node,
    open_store,
    option_value,
    parse_when,
    print_json,
)
from .output import SensorBook, UnitBook, entry_json, entry_line, jsonable

if TYPE_CHECKING:
    from ..entry import Entry
    from ..fleet import FleetSealing
    from ..home import Home
    from ..identity import Identity
    from ..ndjson import AppendReport
    from ..store.log_store import LogStore

__all__ = ["log_group"]


@click.group("log")
def log_group() -> None:
    """Read, write and verify the log."""


@log_group.command("append")
@home_option
@json_option
@click.argument("collection", required=False)
@click.argument("body", required=False)
@click.option("--id", "doc_id", metavar="DOC", help="Write a version of document DOC.")
@click.option(
    "--ndjson",
    type=click.File("rb"),
    metavar="FILE",
    help='Append one entry per line of FILE ("-": standard input): '
    '{"collection": …, "body": …, "id": …} objects, or bodies with --collection.',
)
@click.option(
    "--collection", "fixed", metavar="NAME", help="With --ndjson: each line is a body for NAME."
)
def append_command(
    *,
    collection: str | None,
    body: str | None,
    doc_id: str | None,
    ndjson: BinaryIO | None,
    fixed: str | None,
    as_json: bool,
) -> None:
    """Append a signed entry with a JSON BODY to COLLECTION, or one entry per
    line of an NDJSON file.

    \b
    lichen log append notes '{"text": "pump replaced"}'
    lichen log append config '{"interval": 5}' --id site
    lichen log append --ndjson notes.ndjson
    jq -c '.[]' events.json | lichen log append --ndjson - --collection events/door

    With --ndjson the lines are appended in batches; a bad line stops the run
    (exit 1) naming its number: the lines before it are stored, nothing from it
    on is.
    """
    if ndjson is not None:
        if collection is not None or body is not None or doc_id is not None:
            raise click.UsageError(
                "--ndjson reads the entries from FILE: give no COLLECTION, BODY or --id "
                "(--collection NAME makes every line a body for NAME)"
            )
        _append_ndjson(ndjson, fixed, as_json)
        return
    if fixed is not None:
        raise click.UsageError("--collection goes with --ndjson; give COLLECTION BODY instead")
    if collection is None or body is None:
        raise click.UsageError("give COLLECTION and BODY, or --ndjson FILE")
    _refuse_own(collection)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise LichenError(f"BODY is not valid JSON: {exc}") from None
    home, config, identity = open_node()
    with open_store(home, config) as store:
        try:
            drafts = [Draft(collection, value, doc_id)]
            sealer = _sealer(home, store, identity)
            (entry,) = store.append(
                identity, node_clock(store, identity), sealer(drafts) if sealer else drafts
            )
        except ValueError as exc:  # bad collection / doc id / body
            raise LichenError(str(exc)) from None
    if as_json:
        print_json(entry_json(entry))
    else:
        click.echo(f"appended {entry.where}  {entry.hash.hex()}")


def _sealer(home: Home, store: LogStore, identity: Identity) -> FleetSealing | None:
    """Seals what this node writes to a sealed collection of its fleet (docs/fleet.md)."""
    from ..fleet import fleet_sealing

    return fleet_sealing(home.fleet_file, store, identity)


def _refuse_own(collection: str) -> None:
    if collection.startswith("_"):
        raise LichenError(
            f"collection {collection!r}: names starting with '_' are Lichen's own "
            "(membership, acknowledgements); choose another name"
        )


def _append_ndjson(stream: BinaryIO, collection: str | None, as_json: bool) -> None:
    from ..entry import check_collection
    from ..fleet import fleet_sealing
    from ..ndjson import append_ndjson
    from ..node import Node

    if collection is not None:
        option_value(check_collection, collection, "--collection")
        _refuse_own(collection)
    home, config, identity = open_node()

    async def run() -> AppendReport:
        async with Node.for_home(home, config, identity) as node:
            node.writer.seal = fleet_sealing(home.fleet_file, node.reader, identity)
            return await append_ndjson(
                stream,
                node.writer,
                collection=collection,
                max_entry_size=config.log.max_entry_size,
            )

    report = asyncio.run(run())
    if as_json:
        print_json(report.as_json())
    elif report.appended:
        first, last = report.stored_lines
        click.echo(
            f"appended {report.appended} entries (lines {first}-{last}), "
            f"seq {report.first_seq}-{report.last_seq}"
        )
    else:
        click.echo("appended 0 entries")
    stop = report.error.line if report.error else None
    if stop is None and report.failure is None:
        return
    if report.appended:
        kept = f"lines 1-{report.stored_lines[1]} are stored ({report.appended} entries)"
    else:
        kept = "nothing was stored"
    if report.error is not None:
        name = getattr(stream, "name", "-")
        source = "FILE" if name in ("-", "<stdin>") or not isinstance(name, str) else name
        click.echo(
            f"lichen: error: {report.error}; {kept}; nothing from line {stop} on was written. "
            f"Fix the line, then go on with: tail -n +{stop} {source} | "
            "lichen log append --ndjson -",
            err=True,
        )
    else:
        click.echo(f"lichen: error: the store failed: {report.failure}; {kept}", err=True)
    sys.exit(1)


@log_group.command("export")
@home_option
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV: one row per value.")
@click.option(
    "--since", metavar="WHEN", help="Readings from WHEN: a duration back (12h, 7d) or a date."
)
@click.option("--until", metavar="WHEN", help="Readings before WHEN (the same forms).")
@click.option("--collection", metavar="NAME", help="Only this collection (readings/climate).")
@click.option("--node", metavar="ID", help="Only the readings of this node (lc1…).")
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="Write to this file (default: standard output).",
)
def export_command(
    *,
    as_csv: bool,
    since: str | None,
    until: str | None,
    collection: str | None,
    node: str | None,
    output: TextIO,
) -> None:
    """Export readings, streamed from the log: every reading of every sensor
    (this node's and those synced from others), one row per value.

    \b
    lichen log export --csv > readings.csv
    lichen log export --csv --since 7d --collection readings/climate -o week.csv

    \b
    Columns: time (ISO 8601, UTC), node (its name), node_id, collection,
    sensor, quantity, value, unit, quality.
    """
    from ..clock import pack
    from ..entry import check_collection
    from ..identity import NodeId
    from ..readings_export import ENTRY_LAG_MS, write_long_csv

    if not as_csv:
        raise click.UsageError("say the format: --csv (the only one so far)")
    since_ms = parse_when(since, "--since") if since else None
    until_ms = parse_when(until, "--until") if until else None
    peer = option_value(NodeId.parse, node or None, "--node")
    author = None if peer is None else peer.key
    option_value(check_collection, collection or None, "--collection")
    home, config, identity = open_node()
    with open_store(home, config) as store:
        names = [collection] if collection else [
            name for name, _ in store.collections() if not name.startswith("_")
        ]  # fmt: skip
        low = pack(max(0, since_ms)) if since_ms is not None else 0
        high = pack(until_ms + ENTRY_LAG_MS) if until_ms is not None else 2**63 - 1

        def entries() -> Iterator[Entry]:
            for name in names:
                for entry in store.by_time(name, low, high):
                    if author is None or entry.author == author:
                        yield entry

        describe = SensorBook(store.documents, identity.node_id.key, config.node.name)
        sealing = _sealer(home, store, identity)
        readable = entries() if sealing is None else sealing.readable(entries())
        write_long_csv(output, readable, from_ms=since_ms, to_ms=until_ms, describe=describe)
    if sealing is not None and sealing.unreadable:
        click.echo(
            f"{sealing.unreadable} entries of sealed collections were left out: this node "
            "was not handed their keys (lichen fleet rules shows who reads them)",
            err=True,
        )


@log_group.command("tail")
@home_option
@json_option
@click.argument("collection", required=False)
@click.option("-n", "--lines", default=10, show_default=True, help="How many entries.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing entries as they arrive.")
@click.option("--interval", default=0.5, show_default=True, help="Poll interval for --follow.")
def tail_command(
    collection: str | None, lines: int, follow: bool, interval: float, as_json: bool
) -> None:
    """Show the latest entries (of COLLECTION), newest last."""
    home, config, _ = open_node()
    with open_store(home, config) as store:
        book = UnitBook(store.documents)

        def show(change: int, entry: Any) -> None:
            if entry.collection == SENSORS_COLLECTION:
                book.forget()
            units = book.units(entry) if is_reading_batch(entry.body) else None
            if as_json:
                click.echo(json.dumps(entry_json(entry, change, units), ensure_ascii=False))
            else:
                click.echo(entry_line(entry, width=200, units=units))

        last = store.last_change()
        for change, entry in store.latest_changes(lines, collection):
            show(change, entry)
            last = max(last, change)
        while follow:
            sys.stdout.flush()
            time.sleep(interval)
            for change, entry in store.changes_since(last):
                last = change
                if collection is None or entry.collection == collection:
                    show(change, entry)


@log_group.command("get")
@home_option
@json_option
@click.argument("collection")
@click.argument("doc_id", metavar="ID")
@click.option("--history", is_flag=True, help="Also list every version held.")
def get_command(collection: str, doc_id: str, history: bool, as_json: bool) -> None:
    """Show document ID of COLLECTION: current version and conflicts."""
    home, config, _ = open_node()
    with open_store(home, config) as store:
        document = store.documents.get(collection, doc_id)
        if document is None:
            raise LichenError(f"no document {doc_id!r} in collection {collection!r}")
        versions = store.documents.history(collection, doc_id) if history else []
    if as_json:
        out: dict[str, Any] = {
            "collection": collection,
            "id": doc_id,
            "deleted": document.deleted,
            "body": jsonable(document.body),
            "current": entry_json(document.current),
            "conflicts": [entry_json(e) for e in document.conflicts],
        }
        if history:
            out["history"] = [entry_json(e) for e in versions]
        print_json(out)
        return
    click.echo(json.dumps(jsonable(document.body), ensure_ascii=False, indent=2))
    click.echo(f"# version {document.current.where} {document.current.hash.hex()[:16]}", err=True)
    for conflict in document.conflicts:
        click.echo(
            f"# conflict {conflict.where}: "
            + json.dumps(jsonable(conflict.body), ensure_ascii=False),
            err=True,
        )
    for version in versions:
        click.echo(f"# history  {entry_line(version, width=200)}", err=True)


@log_group.command("verify")
@home_option
@json_option
def verify_command(as_json: bool) -> None:
    """Check every signature, hash chain and head; exit 1 naming each fault."""
    home, config, _ = open_node()
    with open_store(home, config) as store:
        total, _ = store.totals()
        started = time.perf_counter()
        if sys.stderr.isatty() and not as_json and total > 5000:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("verifying", total=total)
                report = verify_log(store, progress=lambda n: bar.update(task, completed=n))
        else:
            report = verify_log(store)
        seconds = time.perf_counter() - started
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "feeds": report.feeds,
                "seconds": round(seconds, 3),
                "faults": [{"entry": f.where, "problem": f.problem} for f in report.faults],
                "truncated": report.truncated,
            }
        )
    else:
        for fault in report.faults:
            click.echo(f"FAULT {fault}", err=True)
        verdict = "ok" if report.ok else f"{len(report.faults)} faults"
        click.echo(
            f"{verdict}: {report.entries} entries in {report.feeds} feeds verified "
            f"in {seconds:.2f} s"
        )
    if not report.ok:
        sys.exit(1)
