"""Retention: prune what the cloud holds, and stay within the disk quota.

One pass (:func:`retention_pass`; the writer runs it as :class:`RetentionPass`,
in one transaction):

1. **Prune after acknowledgement.** For every feed, entries a trusted cloud
   acknowledged at least ``keep_after_ack`` ago are deleted (the store keeps
   current document versions and refuses the pruned entries from then on).
2. **Quota.** When the entries held exceed ``quota`` bytes, or the disk has
   less than ``min_free`` left, space is made down to 90 % of the limit:
   first every acknowledged entry goes, however recent; then, if that is not
   enough, unacknowledged entries are **dropped**: lowest priority first,
   oldest first within a priority, never ``_fleet``, ``_acks`` or ``_drops``
   and never a current document version. What was dropped is recorded as a
   ``_drops`` entry of this node's feed (feeds and seq ranges, entries and
   bytes per collection), so loss is visible to the cloud and to people,
   never silent; and the cloud counts those holes as settled when the node
   dropped its own entries.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import HybridClock
from ..identity import Identity, NodeId
from ..store.log_store import Draft, LogStore
from .config import RetentionConfig, UplinkSettings, priority_of
from .wire import DROPS_COLLECTION, NEVER_DROPPED, DropRecord, drop_body

__all__ = ["RetentionPass", "RetentionReport", "free_disk_bytes", "retention_pass"]

_LOW_WATER = 0.9  # the quota policy frees space down to this share of the limit
_VICTIM_SCAN = 2000


@dataclass
class RetentionReport:
    """What one pass did."""

    pruned: int = 0
    dropped_entries: int = 0
    dropped_bytes: int = 0
    dropped_collections: Counter[str] = field(default_factory=Counter)
    over_quota: bool = False


def free_disk_bytes(path: Path) -> int:
    """Bytes free for this user on the file system holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _held_bytes(store: LogStore) -> int:
    return store.totals()[1]


def _prune_acked(store: LogStore, acked: dict[bytes, int]) -> int:
    pruned = 0
    for author, seq in acked.items():
        pruned += store.prune_now(author, seq + 1)
        store.delivery.forget_marks_now(author, seq + 1)
    return pruned


def _victims(
    store: LogStore, settings: UplinkSettings, need: int, protect: set[bytes]
) -> list[tuple[bytes, int]]:
    """Unacknowledged entries to drop to free ``need`` bytes: lowest priority
    first, oldest first (by timestamp) within one priority."""
    classes: dict[int, list[int]] = {}
    for cid, name in store.connection.execute("SELECT id, name FROM collections"):
        if name in NEVER_DROPPED or name.startswith("_"):
            continue  # membership, acks, drop records, sensor descriptions stay
        classes.setdefault(priority_of(name, settings), []).append(int(cid))
    chosen: list[tuple[bytes, int]] = []
    freed = 0
    for priority in sorted(classes):
        ids = classes[priority]
        marks = ",".join("?" * len(ids))
        rows = store.connection.execute(
            "SELECT f.author, e.seq, length(e.raw) FROM entries e JOIN feeds f ON f.id = e.feed "
            f"WHERE e.collection IN ({marks}) AND e.change NOT IN "
            "(SELECT change FROM doc_versions WHERE leaf = 1) ORDER BY e.ts",
            ids,
        )
        while freed < need and (chunk := rows.fetchmany(_VICTIM_SCAN)):
            for author, seq, size in chunk:
                if bytes(author) in protect:
                    continue
                chosen.append((bytes(author), int(seq)))
                freed += int(size)
                if freed >= need:
                    break
        rows.close()
        if freed >= need:
            break
    return chosen


def retention_pass(
    store: LogStore,
    *,
    identity: Identity,
    clock: HybridClock,
    config: RetentionConfig,
    settings: UplinkSettings,
    clouds: frozenset[bytes],
    free_bytes: Callable[[], int],
    now_ms: int | None = None,
) -> RetentionReport:
    """One retention pass; call it inside ``store.batch`` (the writer thread)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    report = RetentionReport()
    cutoff = now - int(config.keep_after_ack_s * 1000)
    report.pruned += _prune_acked(store, store.delivery.acked_before(cutoff))
    quota = config.quota_bytes
    held = _held_bytes(store)
    short = config.min_free_bytes - free_bytes()
    over = held - quota if quota else 0
    need = max(over, short)
    if need <= 0:
        return report
    report.over_quota = True
    target = int(need + (quota * (1 - _LOW_WATER) if quota else config.min_free_bytes * 0.1))
    # 1. whatever the cloud already holds goes first, however recent
    before = _held_bytes(store)
    report.pruned += _prune_acked(store, store.delivery.acked())
    target -= before - _held_bytes(store)
    if target <= 0:
        return report
    # 2. then unacknowledged entries, by policy; the clouds' own feeds stay
    victims = _victims(store, settings, target, set(clouds))
    if not victims:
        return report
    dropped = store.delivery.drop_entries_now(victims, "disk quota")
    if dropped.entries == 0:
        return report
    record = DropRecord(
        reason="disk quota" if over > 0 else "disk almost full",
        feeds={str(NodeId(a)): ranges for a, ranges in dropped.feeds.items()},
        entries=dropped.entries,
        bytes=dropped.bytes,
        collections=dict(dropped.collections),
    )
    store.append_now(identity, clock, [Draft(DROPS_COLLECTION, drop_body(record))])
    report.dropped_entries = dropped.entries
    report.dropped_bytes = dropped.bytes
    report.dropped_collections = dropped.collections
    return report


@dataclass(frozen=True, slots=True)
class RetentionPass:
    """A write (:mod:`agent.store.commands`): one :func:`retention_pass`, a
    ``_drops`` entry signed by ``identity`` when entries had to go."""

    identity: Identity
    clock: HybridClock
    config: RetentionConfig
    settings: UplinkSettings
    clouds: frozenset[bytes]
    free_bytes: Callable[[], int]

    def apply(self, store: LogStore) -> RetentionReport:
        return retention_pass(
            store, identity=self.identity, clock=self.clock, config=self.config,
            settings=self.settings, clouds=self.clouds, free_bytes=self.free_bytes,
        )  # fmt: skip
