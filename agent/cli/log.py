"""``lichen log append | tail | get | verify``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..errors import LichenError
from ..readings import SENSORS_COLLECTION, is_reading_batch
from ..store.log_store import Draft
from ..store.verify import verify_log
from .common import home_option, json_option, node_clock, open_node, open_store, print_json
from .output import UnitBook, entry_json, entry_line, jsonable

__all__ = ["log_group"]


@click.group("log")
def log_group() -> None:
    """Read, write and verify the log."""


@log_group.command("append")
@home_option
@json_option
@click.argument("collection")
@click.argument("body")
@click.option("--id", "doc_id", metavar="DOC", help="Write a version of document DOC.")
def append_command(collection: str, body: str, doc_id: str | None, as_json: bool) -> None:
    """Append a signed entry with a JSON BODY to COLLECTION.

    \b
    lichen log append notes '{"text": "pump replaced"}'
    lichen log append config '{"interval": 5}' --id site
    """
    if collection.startswith("_"):
        raise LichenError(
            f"collection {collection!r}: names starting with '_' are Lichen's own "
            "(membership, acknowledgements); choose another name"
        )
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise LichenError(f"BODY is not valid JSON: {exc}") from None
    home, config, identity = open_node()
    with open_store(home, config) as store:
        try:
            (entry,) = store.append(
                identity, node_clock(store, identity), [Draft(collection, value, doc_id)]
            )
        except ValueError as exc:  # bad collection / doc id / body
            raise LichenError(str(exc)) from None
    if as_json:
        print_json(entry_json(entry))
    else:
        click.echo(f"appended {entry.where}  {entry.hash.hex()}")


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
