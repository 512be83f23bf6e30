"""What awaits the cloud, and what was dropped: the numbers ``lichen status`` shows."""

from __future__ import annotations

import time
from collections.abc import Container
from typing import Any

from ..clock import physical_ms
from ..store.log_store import LogStore
from .wire import ACKS_COLLECTION, DROPS_COLLECTION, parse_drop_body

__all__ = ["backlog_status", "drop_totals"]


def backlog_status(reader: LogStore, clouds: Container[bytes]) -> dict[str, Any]:
    """Entries and bytes not yet acknowledged, and the age of the oldest (per the
    entries' own timestamps), over every feed but the clouds' own."""
    acked = reader.delivery.acked()
    conn = reader.connection
    acks = conn.execute("SELECT id FROM collections WHERE name = ?", (ACKS_COLLECTION,)).fetchone()
    skip_collection = -1 if acks is None else int(acks[0])
    entries = size = 0
    oldest: int | None = None
    feeds = 0
    for feed_id, author in conn.execute("SELECT id, author FROM feeds").fetchall():
        if bytes(author) in clouds:
            continue
        after = acked.get(bytes(author), 0)
        count, total = conn.execute(
            "SELECT count(*), coalesce(sum(length(raw)), 0) FROM entries "
            "WHERE feed = ? AND seq > ? AND collection != ?",
            (feed_id, after, skip_collection),
        ).fetchone()
        # timestamps grow along a feed: the oldest is the lowest seq's
        first = conn.execute(
            "SELECT ts FROM entries WHERE feed = ? AND seq > ? ORDER BY seq LIMIT 1",
            (feed_id, after),
        ).fetchone()
        first_ts = None if first is None else first[0]
        if count and first_ts is not None:
            feeds += 1
            entries += int(count)
            size += int(total)
            oldest = first_ts if oldest is None else min(oldest, first_ts)
    now = time.time_ns() // 1_000_000
    oldest_ms = None if oldest is None else physical_ms(oldest)
    return {
        "entries": entries,
        "bytes": size,
        "feeds": feeds,
        "oldest_unacked_ms": oldest_ms,
        "oldest_unacked_age_s": None if oldest_ms is None else max(0, (now - oldest_ms) // 1000),
    }


def drop_totals(reader: LogStore, author: bytes) -> dict[str, Any]:
    """The sum of ``author``'s ``_drops`` records held in the log."""
    entries = size = records = 0
    last: int | None = None
    for entry in reader.by_time(DROPS_COLLECTION):
        if entry.author != author:
            continue
        try:
            record = parse_drop_body(entry.body)
        except ValueError:
            continue
        records += 1
        entries += record.entries
        size += record.bytes
        last = physical_ms(entry.ts)
    return {"records": records, "entries": entries, "bytes": size, "last_at_ms": last}
