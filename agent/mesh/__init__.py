"""The mesh: whom to sync with, when, and the sessions that do it.

=====================  ====================================================
:mod:`.trust`          who may connect (the trust store, the trust policy)
:mod:`.peerbook`       what we know of each peer (a small JSON file)
:mod:`.planner`        whom to dial and when, without I/O
:mod:`.links`          the transport instances, each started (and retried) alone
:mod:`.admission`      which incoming handshakes may start: caps and rates
:mod:`.sessions`       the open sessions, one live one per peer
:mod:`.session`        one sync session against the log, over a channel
:mod:`.log_view`       the log as a session reads and writes it
:mod:`.send_queue`     a session's bytes, written by a task of their own
:mod:`.report`         what one session did, and what is recorded of it
:mod:`.gossip`         the asyncio runtime tying transports and sessions
=====================  ====================================================
"""

from __future__ import annotations

from .gossip import Gossip, GossipContext, heads_digest
from .log_view import SessionLog
from .peerbook import PeerBook, PeerRecord
from .planner import GossipPlanner, Target, TransportBudget
from .session import SessionReport, SyncSession
from .trust import TrustPolicy, TrustStore

__all__ = [
    "Gossip",
    "GossipContext",
    "GossipPlanner",
    "PeerBook",
    "PeerRecord",
    "SessionLog",
    "SessionReport",
    "SyncSession",
    "Target",
    "TransportBudget",
    "TrustPolicy",
    "TrustStore",
    "heads_digest",
]
