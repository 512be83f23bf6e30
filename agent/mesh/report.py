"""What one sync session did: the record a session keeps and hands back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..sync import SyncStats

__all__ = ["SessionReport"]


@dataclass(kw_only=True)
class SessionReport(SyncStats):
    """What a session did, counted by its own side: the driver's counts
    (:class:`~agent.sync.SyncStats`) plus the peer, bytes on the wire and time."""

    peer: str
    sync_bytes_sent: int = 0
    sync_bytes_received: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
