"""How the CLI shows entries: JSON for programs, one line each for people.

JSON form of an entry (``--json``; one object per line for streams)::

    {"author": "lc1…", "seq": 42, "hash": "<hex>", "prev": "<hex>"|null,
     "ts": <HLC int>, "time": "2026-11-23T10:00:00.123Z", "collection": "…",
     "id": "<doc id>"|null, "base": ["<hex>", …], "body": <value>,
     "readings": [{"ts_ms": …, "time": "…", "<field>": value, …}, …]   (batches only)
     "change": <local change number>                                   (when known)}

Body values map to JSON directly, except byte strings, which become
``{"$base64": "…"}``, and integer map keys, which become strings.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any

from ..clock import format_ts, physical_ms
from ..entry import Entry
from ..identity import NodeId
from ..readings import SENSORS_COLLECTION, decode_reading_batch, describe_id, is_reading_batch
from ..store.documents import DocumentIndex


def _description(documents: DocumentIndex, entry: Entry) -> dict[str, Any]:
    """The ``_sensors`` document body describing ``entry``'s collection ({} if none)."""
    doc = documents.get(
        SENSORS_COLLECTION, describe_id(entry.collection, str(NodeId(entry.author)))
    )
    return doc.body if doc and isinstance(doc.body, dict) else {}


def _units(description: Mapping[str, Any]) -> dict[str, str]:
    fields = description.get("fields")
    return {
        name: spec["unit"]
        for name, spec in (fields.items() if isinstance(fields, dict) else ())
        if isinstance(spec, dict) and isinstance(spec.get("unit"), str)
    }


class UnitBook:
    """Units of reading collections, from their ``_sensors`` documents (cached)."""

    def __init__(self, documents: DocumentIndex) -> None:
        self._documents = documents
        self._cache: dict[tuple[bytes, str], dict[str, str]] = {}

    def forget(self) -> None:
        """Drop cached units (a ``_sensors`` document changed)."""
        self._cache.clear()

    def units(self, entry: Entry) -> dict[str, str]:
        key = (entry.author, entry.collection)
        if key not in self._cache:
            self._cache[key] = _units(_description(self._documents, entry))
        return self._cache[key]


class SensorBook:
    """``(node name, sensor name, units)`` of an entry's reading collection, from
    its ``_sensors`` document (cached per feed and collection): this node's name
    from its configuration, another node's as its agent wrote it there (empty
    when it did not); the sensor's name, else the collection's last part."""

    def __init__(self, documents: DocumentIndex, own: bytes, own_name: str) -> None:
        self._documents, self._own, self._own_name = documents, own, own_name
        self._cache: dict[tuple[bytes, str], tuple[str, str, dict[str, str]]] = {}

    def __call__(self, entry: Entry) -> tuple[str, str, dict[str, str]]:
        key = (entry.author, entry.collection)
        if key not in self._cache:
            body = _description(self._documents, entry)
            node = self._own_name if entry.author == self._own else body.get("node")
            sensor = body.get("sensor") or entry.collection.rpartition("/")[2]
            self._cache[key] = (
                node if isinstance(node, str) else "",
                sensor if isinstance(sensor, str) else "",
                _units(body),
            )
        return self._cache[key]


__all__ = ["SensorBook", "UnitBook", "entry_json", "entry_line", "jsonable", "readings_summary"]


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):  # NaN has no JSON form
        return None
    return value


def _ms_iso(ms: int) -> str:
    return format_ts(ms << 16)


def entry_json(
    entry: Entry, change: int | None = None, units: Mapping[str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "author": str(NodeId(entry.author)),
        "seq": entry.seq,
        "hash": entry.hash.hex(),
        "prev": entry.prev.hex() if entry.prev else None,
        "ts": entry.ts,
        "time": format_ts(entry.ts),
        "collection": entry.collection,
        "id": entry.doc_id,
        "base": [b.hex() for b in entry.base],
        "body": jsonable(entry.body),
    }
    if is_reading_batch(entry.body):
        # shaped like a batch but not one: then the body says it all
        with contextlib.suppress(ValueError):
            out["readings"] = [
                {"ts_ms": r.ts_ms, "time": _ms_iso(r.ts_ms), **jsonable(r.values)}
                | ({"quality": r.quality} if r.quality else {})
                for r in decode_reading_batch(entry.body)
            ]
        if units:
            out["units"] = dict(units)
    if change is not None:
        out["change"] = change
    return out


def readings_summary(body: Any, units: Mapping[str, str] | None = None) -> str | None:
    """``10 readings: temperature 21.37…21.40 °C`` for a batch, else None."""
    if not is_reading_batch(body):
        return None
    try:
        readings = decode_reading_batch(body)
    except ValueError:
        return None
    inline = body.get("u") if isinstance(body.get("u"), dict) else {}
    units = {**(units or {}), **inline}
    parts = []
    names = sorted({name for r in readings for name in r.values})
    for name in names:
        values = [r.values[name] for r in readings if name in r.values]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        unit = f" {units[name]}" if name in units else ""
        if len(numbers) == len(values) and len(set(numbers)) > 1:
            parts.append(f"{name} {min(numbers):g}…{max(numbers):g}{unit}")
        else:
            shown = values[-1]
            parts.append(f"{name} {json.dumps(shown, ensure_ascii=False)}{unit}")
    noun = "reading" if len(readings) == 1 else "readings"
    return f"{len(readings)} {noun}: " + ", ".join(parts)


def entry_line(entry: Entry, width: int = 100, units: Mapping[str, str] | None = None) -> str:
    """One human line: time, author/seq, collection, [doc id], body or summary."""
    who = f"{NodeId(entry.author).short}…/{entry.seq}"
    body = readings_summary(entry.body, units)
    if body is None:
        body = json.dumps(jsonable(entry.body), ensure_ascii=False, separators=(",", ":"))
    if entry.doc_id is not None:
        body = f"[{entry.doc_id}] {body}"
    when = format_ts(physical_ms(entry.ts) << 16)
    line = f"{when}  {who}  {entry.collection}  {body}"
    return line if len(line) <= width else line[: width - 1] + "…"
