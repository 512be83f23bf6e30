"""The dashboard's readings: the newest of one of this node's collections.

``GET /api/readings?collection=readings/climate&limit=120&after=TS_MS`` answers::

    {"collection": "readings/climate", "fields": {"temperature": {"unit": "°C", …}},
     "readings": [{"ts_ms": …, "values": {…}, "quality": null}, …],   # oldest first
     "limit": 120, "more": false}

The newest ``limit`` readings (at most :data:`MAX_LIMIT`) of this node's own
feed, with a reading time after ``after`` when it is given (what a page that
already has its points asks for). Entries stream newest first from the
``(collection, ts)`` index and stop as soon as ``limit`` readings are found, so
the answer costs O(limit), however long the log.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..entry import Entry, check_collection
from ..http_messages import ParameterError, int_parameter, query_parameters
from ..readings import SENSORS_COLLECTION, decode_reading_batch, describe_id, is_reading_batch
from ..store.log_store import LogStore

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ReadingsRequest", "latest_readings"]

DEFAULT_LIMIT = 120
MAX_LIMIT = 1000
#: an entry is written at most one flush interval (≤ 1 h) after its readings
_ENTRY_LAG_MS = 3_600_000


@dataclass(frozen=True)
class ReadingsRequest:
    collection: str
    limit: int = DEFAULT_LIMIT
    after_ms: int | None = None

    @classmethod
    def parse(cls, query: list[tuple[str, str]]) -> ReadingsRequest:
        """The query's parameters, checked; :class:`ParameterError` names a bad one."""
        seen = query_parameters(query, ("collection", "limit", "after"))
        collection = seen.get("collection", "")
        try:
            check_collection(collection)
        except ValueError as exc:
            raise ParameterError("collection", str(exc)) from None
        limit = (
            int_parameter("limit", seen["limit"], 1, MAX_LIMIT)
            if "limit" in seen
            else DEFAULT_LIMIT
        )
        after = int_parameter("after", seen["after"], 0, 2**47) if "after" in seen else None
        return cls(collection, limit, after)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def latest_readings(
    store: LogStore,
    author: bytes,
    node_id: str,
    request: ReadingsRequest,
    *,
    readable: Callable[[Iterable[Entry]], Iterable[Entry]] | None = None,
) -> dict[str, Any]:
    """The answer to ``request`` from ``author``'s feed in ``store``; ``readable``
    opens the entries of sealed collections (:class:`agent.fleet.FleetSealing`)."""
    since_ts = 0
    if request.after_ms is not None:
        since_ts = max(0, request.after_ms - _ENTRY_LAG_MS) << 16
    found: list[dict[str, Any]] = []
    more = False
    # each entry holds at least one reading: `limit` entries are enough
    entries: Iterable[Entry] = store.by_time(request.collection, since_ts, newest_first=True,
                            limit=request.limit + 1, author=author)  # fmt: skip
    if readable is not None:
        entries = readable(entries)
    for entry in entries:
        if len(found) >= request.limit:
            more = True
            break
        if not is_reading_batch(entry.body):
            continue
        try:
            readings = decode_reading_batch(entry.body)
        except ValueError:
            continue
        for reading in sorted(readings, key=lambda r: r.ts_ms, reverse=True):
            if request.after_ms is not None and reading.ts_ms <= request.after_ms:
                continue
            if len(found) >= request.limit:
                more = True
                break
            found.append({"ts_ms": reading.ts_ms, "quality": reading.quality,
                          "values": {k: _clean(v) for k, v in reading.values.items()}})  # fmt: skip
    found.sort(key=lambda r: r["ts_ms"])
    described = store.documents.get(SENSORS_COLLECTION, describe_id(request.collection, node_id))
    body = described.body if described is not None and not described.deleted else None
    fields = body.get("fields", {}) if isinstance(body, dict) else {}
    return {
        "collection": request.collection,
        "fields": fields,
        "readings": found,
        "limit": request.limit,
        "more": more,
    }
