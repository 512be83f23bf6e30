"""What one sync session did: the record a session keeps and hands back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["SessionReport"]


@dataclass
class SessionReport:
    """What a session did, counted by its own side."""

    peer: str
    role: str | None = None
    entries_sent: int = 0
    entries_wanted: int = 0  # asked of the peer (an upper bound: it may lack some)
    entries_received: int = 0
    entries_stored: int = 0
    duplicates: int = 0
    rounds_offered: int = 0
    rounds_received: int = 0
    sync_bytes_sent: int = 0
    sync_bytes_received: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    error: str | None = None  # ours: why we ended it
    peer_error: str | None = None  # theirs: the ERROR they sent
    protocol_error: bool = False  # the peer broke the protocol or sent bad data
    clean: bool = False  # both said BYE

    @property
    def ok(self) -> bool:
        return self.error is None and self.peer_error is None
