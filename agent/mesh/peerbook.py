"""The peer book: who this node has met, where, and how syncing with them went.

Small, human-readable, node-local state: ``HOME/state/peers.json``, one object
per peer, sorted by node id. The book lives in a dict; changes mark it dirty and
:meth:`PeerBook.flush` writes the whole file atomically — on a timer (every
``flush_interval`` seconds) and at shutdown — so a sighting costs a dict update,
not a file write. (TinyDB was measured for this with 1 000 peers — see
``bench/peerbook_bench.py`` and docs/decisions.md — and was too slow per update.)

A damaged file is moved aside (``peers.json.damaged``) and the book starts
empty: the peer book is a cache of what the network tells us again, never a
reason not to start.

Replication checkpoints are **not** here: they live in the log database, next to
the entries they describe, so a crash can never leave one ahead of the data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write

__all__ = ["PeerBook", "PeerRecord"]

log = logging.getLogger("lichen.mesh")
MAX_ADDRESSES = 4  # per transport, most recent first
PENALTY_HALF_LIFE_S = 3600.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class PeerRecord:
    """What we know about one peer (a node id)."""

    node: str
    addresses: dict[str, list[str]] = field(default_factory=dict)
    heads_digest: str | None = None
    last_seen_ms: int | None = None
    last_sync_ms: int | None = None
    last_sync_ok: bool | None = None
    synced_digest: str | None = None
    syncs: int = 0
    failures: int = 0
    entries_received: int = 0
    entries_sent: int = 0
    last_error: str | None = None
    penalty: float = 0.0
    penalty_at_ms: int = 0

    def current_penalty(self, now_ms: int) -> float:
        """The penalty, halved for every hour since it was last raised."""
        if not self.penalty:
            return 0.0
        age = max(0, now_ms - self.penalty_at_ms) / 1000
        return float(self.penalty * 0.5 ** (age / PENALTY_HALF_LIFE_S))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeerRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class PeerBook:
    """The peers this node knows, persisted as JSON; not thread-safe (event loop only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._peers: dict[str, PeerRecord] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            records = [PeerRecord.from_json(item) for item in data["peers"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(self.path.name + ".damaged")
            log.warning(
                "peer book %s unreadable (%s); moved to %s, starting empty", self.path, exc, aside
            )
            os.replace(self.path, aside)
            return
        self._peers = {r.node: r for r in records}

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, node: str) -> PeerRecord | None:
        return self._peers.get(node)

    def all(self) -> list[PeerRecord]:
        return [self._peers[k] for k in sorted(self._peers)]

    def _record(self, node: str) -> PeerRecord:
        record = self._peers.get(node)
        if record is None:
            record = self._peers[node] = PeerRecord(node)
        self._dirty = True
        return record

    def seen(self, node: str, address: str | None = None, heads_digest: str | None = None) -> None:
        """A sighting (an advertisement, or a connection) of ``node`` at ``address``."""
        record = self._record(node)
        record.last_seen_ms = _now_ms()
        if heads_digest is not None:
            record.heads_digest = heads_digest
        if address:
            scheme = address.split("://", 1)[0]
            known = [a for a in record.addresses.get(scheme, []) if a != address]
            record.addresses[scheme] = [address, *known][:MAX_ADDRESSES]

    def synced(
        self,
        node: str,
        *,
        ok: bool,
        sent: int = 0,
        received: int = 0,
        error: str | None = None,
        digest: str | None = None,
    ) -> None:
        """The outcome of a session with ``node``."""
        record = self._record(node)
        record.last_sync_ms = _now_ms()
        record.last_sync_ok = ok
        record.entries_sent += sent
        record.entries_received += received
        if ok:
            record.syncs += 1
            record.synced_digest = digest or record.heads_digest
        else:
            record.failures += 1
            record.last_error = error

    def penalise(self, node: str, reason: str, amount: float = 1.0) -> None:
        """The peer broke the protocol or sent bad data: remember it (it decays)."""
        record = self._record(node)
        now = _now_ms()
        record.penalty = record.current_penalty(now) + amount
        record.penalty_at_ms = now
        record.last_error = reason

    def flush(self) -> bool:
        """Write the book if it changed; True if written."""
        if not self._dirty:
            return False
        data = {"peers": [asdict(self._peers[k]) for k in sorted(self._peers)]}
        atomic_write(self.path, json.dumps(data, indent=1).encode("utf-8"), durable=False)
        self._dirty = False
        return True
