"""What ``lichen status`` shows of a cloud home: per feed, what the cloud holds.

Read from the sink itself (the home's log, or PostgreSQL), so it works with
or without a running ``lichen cloud``; the running role's counters come from
its ``HOME/run/status.json`` (``agent.cloud`` in ``lichen status --json``).
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..identity import Identity
from ..store.log_store import LogStore
from .sink import SinkError, SinkReader
from .sqlite_sink import SqliteReader

__all__ = ["cloud_status", "is_cloud_home"]


def is_cloud_home(config: Config, running: dict[str, Any] | None) -> bool:
    return config.node.role == "cloud" or bool(running and running.get("role") == "cloud")


def cloud_status(
    config: Config,
    identity: Identity,
    store: LogStore,
    running: dict[str, Any] | None,
) -> dict[str, Any]:
    """``{"sink", "feeds": [{node_id, entries, head_seq, contiguous_seq, acked_seq}],
    "running"}``; a sink that cannot be read gives ``"error"`` instead of feeds."""
    sink, dsn = config.cloud.sink, config.cloud.postgres
    if running and running.get("cloud"):  # flags may have overridden the file
        sink = running["cloud"].get("sink", sink)
        dsn = dsn or running["cloud"].get("postgres") or ""
    own = identity.node_id.key
    out: dict[str, Any] = {"sink": sink, "running": bool(running)}
    reader: SinkReader
    try:
        if sink == "postgres":
            from .postgres_sink import PostgresReader

            reader = PostgresReader(dsn, own)
        else:
            reader = SqliteReader(store, own)
        try:
            feeds = [f for f in reader.feeds() if not f.own]
            entries, size = reader.totals()
        finally:
            reader.close()
    except SinkError as exc:
        out["error"] = str(exc)
        return out
    out |= {
        "entries": entries,
        "bytes": size,
        "feeds": [f.as_json() for f in feeds],
        "forks": len(store.forks()) if sink == "sqlite" else None,
    }
    return out
