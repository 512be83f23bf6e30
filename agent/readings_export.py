"""Readings as table rows: what the cloud's ``/v1/readings.csv`` and a board's
``lichen log export --csv`` are made of.

:func:`reading_rows` decodes one entry's reading batch into rows (a time
window applied); :func:`csv_cell` makes a value safe for a spreadsheet. Both
are shared by the two exports. The cloud's CSV is *wide* (one column per
field, for a query over one kind of sensor); the board's is *long*
(:data:`LONG_HEADER`: one row per value, with its unit and the node's name),
which needs no first pass to learn the columns and mixes sensors freely::

    time,node,node_id,collection,sensor,quantity,value,unit,quality
    "2026-12-05T08:00:00.000Z","shed-1","lc1…","readings/climate","climate","temperature",21.53,"°C",""
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

from .clock import format_ts
from .entry import Entry
from .identity import NodeId
from .readings import decode_reading_batch, is_reading_batch

__all__ = [
    "ENTRY_LAG_MS",
    "FORMULA_STARTS",
    "LONG_HEADER",
    "csv_cell",
    "iso_ms",
    "reading_rows",
    "write_long_csv",
]

log = logging.getLogger("lichen.export")

#: readings are at most one flush interval (≤ 1 h) older than their entry
ENTRY_LAG_MS = 3_600_000
#: what makes a spreadsheet run a cell as a formula (OWASP, "CSV Injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LONG_HEADER = (
    "time", "node", "node_id", "collection", "sensor", "quantity", "value", "unit", "quality"
)  # fmt: skip


def csv_cell(value: Any) -> str | int | float:
    """A value as a CSV cell: numbers stay numbers (negative ones too); text that
    a spreadsheet would run as a formula gets a leading ``'``, which it shows as
    text (OWASP's CSV injection guidance; the writer quotes every text cell)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def iso_ms(ms: int) -> str:
    """``2026-12-05T08:00:00.123Z``: milliseconds since the epoch, ISO 8601 UTC."""
    return format_ts(ms << 16)


def reading_rows(
    entry: Entry, from_ms: int | None = None, to_ms: int | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of one entry's reading batch with ``from_ms <= ts_ms < to_ms``:
    ``{"ts_ms", "node", "collection", "seq", "values", "quality"}`` (a
    non-finite number becomes None). An entry that is not a readable batch has
    none."""
    if not is_reading_batch(entry.body):
        return
    try:
        readings = decode_reading_batch(entry.body)
    except ValueError as exc:
        log.debug("skipping %s: not a readable batch (%s)", entry.where, exc)
        return
    node = str(NodeId(entry.author))
    for reading in readings:
        if from_ms is not None and reading.ts_ms < from_ms:
            continue
        if to_ms is not None and reading.ts_ms >= to_ms:
            continue
        yield {
            "ts_ms": reading.ts_ms,
            "node": node,
            "collection": entry.collection,
            "seq": entry.seq,
            "values": {k: _clean(v) for k, v in reading.values.items()},
            "quality": reading.quality,
        }


def write_long_csv(
    out: TextIO,
    entries: Iterable[Entry],
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    describe: Callable[[Entry], tuple[str, str, Mapping[str, str]]],
) -> int:
    """Write the header and one row per value of ``entries``' readings to
    ``out``; return the number of rows. ``describe(entry)`` gives the node's
    name, the sensor's name and the units of its fields."""
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(LONG_HEADER)
    count = 0
    for entry in entries:
        rows = reading_rows(entry, from_ms, to_ms)
        first = next(rows, None)
        if first is None:
            continue
        name, sensor, units = describe(entry)
        for row in (first, *rows):
            time, quality = iso_ms(row["ts_ms"]), csv_cell(row["quality"])
            for quantity, value in row["values"].items():
                writer.writerow(
                    [time, csv_cell(name), row["node"], csv_cell(entry.collection),
                     csv_cell(sensor), csv_cell(quantity), csv_cell(value),
                     csv_cell(units.get(quantity)), quality]
                )  # fmt: skip
                count += 1
    return count
