"""Which acknowledgements count, and taking them into the delivery state.

A cloud acknowledges by signing ``_acks`` entries (see :mod:`agent.uplink.wire`).
They reach a board by MQTT or by gossip and are stored like any entry; the
:class:`AckLedger` then reads every newly stored ``_acks`` entry (by local
change counter, so each is looked at once) and, if its author is a trusted
cloud, records the acknowledged seq in ``uplink_acks``.

Trusted clouds are the ``[retention] ack_from`` node ids. With that list
empty, a cloud becomes trusted when its acknowledgement arrives over one of
this node's own uplinks (the broker's access control vouches for it: only the
cloud may publish on the node's ack topic); it is then remembered in
``HOME/state/clouds`` so its acknowledgements count by any path afterwards.
Set ``ack_from`` on boards whose broker is shared with untrusted clients.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..entry import Entry, decode_entry
from ..errors import LichenError
from ..fsutil import atomic_write
from ..identity import NodeId
from ..store.log_store import LogStore
from .wire import ACKS_COLLECTION, parse_ack_body

__all__ = ["Ack", "AckLedger"]

log = logging.getLogger("lichen.uplink")


@dataclass(frozen=True)
class Ack:
    """``cloud`` holds ``feed``'s entries ``1..seq``."""

    feed: bytes
    seq: int
    cloud: bytes


def ack_of(entry: Entry) -> Ack | None:
    """The acknowledgement an ``_acks`` entry carries, or None if malformed."""
    if entry.collection != ACKS_COLLECTION or entry.doc_id is None:
        return None
    try:
        feed = NodeId.parse(entry.doc_id).key
        seq = parse_ack_body(entry.body)
    except (ValueError, LichenError):
        return None
    return Ack(feed, seq, entry.author)


class AckLedger:
    """Trusted clouds and the newest acknowledgements seen (reads the log)."""

    def __init__(self, reader: LogStore, ack_from: Iterable[str], pinned_file: Path) -> None:
        self.reader = reader
        self.configured = frozenset(NodeId.parse(t).key for t in ack_from)
        self.pinned_file = pinned_file
        self.pinned: set[bytes] = set() if self.configured else self._load_pinned()
        self._change = 0  # the log's change counter up to which _acks were read
        self.last_ack: Ack | None = None
        self.last_ack_ms: int | None = None

    def _load_pinned(self) -> set[bytes]:
        try:
            lines = self.pinned_file.read_text("utf-8").split()
        except FileNotFoundError:
            return set()
        out = set()
        for line in lines:
            try:
                out.add(NodeId.parse(line).key)
            except ValueError:
                log.warning("ignoring a malformed cloud id in %s: %r", self.pinned_file, line)
        return out

    @property
    def trusted(self) -> frozenset[bytes]:
        return self.configured or frozenset(self.pinned)

    def is_cloud(self, author: bytes) -> bool:
        return author in self.trusted

    def vouch(self, entries: Iterable[Entry]) -> None:
        """Entries that came over this node's own uplink: with no ``ack_from``
        configured, the authors of their acknowledgements become trusted clouds."""
        if self.configured:
            return
        new = {e.author for e in entries if ack_of(e) is not None and e.author not in self.pinned}
        if not new:
            return
        self.pinned |= new
        text = "".join(f"{NodeId(k)}\n" for k in sorted(self.pinned))
        self.pinned_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.pinned_file, text.encode())
        for key in new:
            log.warning(
                "trusting cloud %s: its acknowledgement came over this node's uplink "
                "(set [retention] ack_from to choose clouds explicitly)",
                NodeId(key),
            )

    def rescan(self) -> None:
        """Read every ``_acks`` entry again (after new clouds became trusted)."""
        self._change = 0

    def new_acks(self) -> list[Ack]:
        """Acknowledgements by trusted clouds stored since the last call."""
        trusted = self.trusted
        last = self.reader.last_change()
        if not trusted or last <= self._change:
            return []
        acks: list[Ack] = []
        # `+collection` keeps SQLite on the primary key: only the new rows are read
        cid = self.reader.connection.execute(
            "SELECT id FROM collections WHERE name = ?", (ACKS_COLLECTION,)
        ).fetchone()
        if cid is not None:
            rows = self.reader.connection.execute(
                "SELECT change, raw FROM entries WHERE change > ? AND +collection = ? "
                "ORDER BY change",
                (self._change, cid[0]),
            )
            for change, raw in rows:
                last = max(last, int(change))
                entry = decode_entry(bytes(raw), strict=False, max_size=len(raw))
                ack = ack_of(entry)
                if ack is not None and ack.cloud in trusted:
                    acks.append(ack)
        self._change = last
        return acks

    def record(self, store: LogStore, acks: Iterable[Ack], now_ms: int) -> list[Ack]:
        """In the writer thread, inside a batch: record ``acks``; returns those
        that advanced what was known."""
        return [a for a in acks if store.record_ack_now(a.feed, a.seq, a.cloud, now_ms)]
