"""What one sync session did: the record a session keeps and hands back, and
what the gossip runtime makes of it (:func:`record_outcome`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..logs import event
from ..sync import SyncStats

if TYPE_CHECKING:
    from .peerbook import PeerBook
    from .planner import GossipPlanner

__all__ = ["SessionReport", "record_outcome"]

log = logging.getLogger("lichen.mesh")


@dataclass(kw_only=True)
class SessionReport(SyncStats):
    """What a session did, counted by its own side: the driver's counts
    (:class:`~agent.sync.SyncStats`) plus the peer, bytes on the wire and time."""

    peer: str
    sync_bytes_sent: int = 0
    sync_bytes_received: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    entries_checked_apart: int = 0
    """Entries proven (strict decoding, signature) in worker processes."""


def record_outcome(
    report: SessionReport,
    book: PeerBook,
    planner: GossipPlanner,
    *,
    node: str,
    dialled: str | None,
    superseded: bool,
    revoked: bool,
) -> bool:
    """Record how a session with ``node`` went in the peer book (a protocol error
    penalises the peer) and, for a session this node ``dialled`` (at that
    address), in the planner; log one line. Return whether it counts as a
    success: it ended well, or gave way to another session with the peer
    (``superseded``), and its peer was not ``revoked``."""
    ok = (report.ok or superseded) and not revoked
    error = "ended: no longer trusted" if revoked else report.error or report.peer_error
    record = book.get(node)
    digest = record.heads_digest if record else None
    book.synced(node, ok=ok, sent=report.entries_sent, received=report.entries_stored,
                error=error, digest=digest)  # fmt: skip
    if report.protocol_error:
        book.penalise(node, report.error or "protocol error")
    if dialled is not None:
        wire = report.sync_bytes_sent + report.sync_bytes_received
        planner.outcome(dialled, time.monotonic(), ok=ok, node=node, digest=digest, wire_bytes=wire)
    event(
        log,
        "session closed",
        logging.INFO if ok or revoked else logging.WARNING,
        peer=node,
        sent=report.entries_sent,
        stored=report.entries_stored,
        seconds=round(report.seconds, 2),
        error=None if superseded else error,
        superseded=superseded or None,
    )
    return ok
