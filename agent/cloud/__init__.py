"""The cloud ingestion role (``lichen cloud``): verify, store exactly once, acknowledge.

Layers, from pure to I/O (``docs/cloud.md`` describes the whole role):

* :mod:`~agent.cloud.core` — sans-IO: a message's verdicts, acknowledgement
  plans, the per-board coalescing of acknowledgements;
* :mod:`~agent.cloud.sink` — the storage interface; :mod:`~agent.cloud.sqlite_sink`
  (the home's own log) and :mod:`~agent.cloud.postgres_sink` (psycopg 3);
* :mod:`~agent.cloud.ingest` — :class:`Ingestor`: core + sink + the node's
  writer, no MQTT (what a benchmark drives);
* :mod:`~agent.cloud.mqtt` — the broker link, on the shared MQTT layer
  (:mod:`agent.mqtt`); :mod:`~agent.cloud.api` — the read API, on the shared
  HTTP shell :mod:`agent.http`; :mod:`~agent.cloud.replies` — :class:`BoardReplies`,
  what goes back to a board (acknowledgements, time beacons, commands);
  :mod:`~agent.cloud.role` — :class:`CloudRole`, the running node.

Names are imported lazily, so ``import agent.cloud`` pulls in neither paho,
psycopg nor h11.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__all__ = [
    "Accepted",
    "AckCoalescer",
    "AckPublication",
    "BoardReplies",
    "CloudApi",
    "CloudConfig",
    "CloudRole",
    "EntryQuery",
    "FeedInfo",
    "FeedProgress",
    "IngestCore",
    "IngestReport",
    "IngestStats",
    "Ingestor",
    "Judgement",
    "PostgresSink",
    "Rejection",
    "Sink",
    "SinkError",
    "SinkReader",
    "SqliteSink",
    "StoreResult",
    "make_sink",
]

_WHERE = {
    "AckCoalescer": "core",
    "AckPublication": "core",
    "Accepted": "core",
    "IngestCore": "core",
    "Judgement": "core",
    "Rejection": "core",
    "CloudApi": "api",
    "CloudConfig": ".config.cloud",
    "CloudRole": "role",
    "BoardReplies": "replies",
    "make_sink": "ingest",
    "EntryQuery": "sink",
    "FeedInfo": "sink",
    "FeedProgress": "sink",
    "Sink": "sink",
    "SinkError": "sink",
    "SinkReader": "sink",
    "StoreResult": "sink",
    "IngestReport": "ingest",
    "IngestStats": "ingest",
    "Ingestor": "ingest",
    "PostgresSink": "postgres_sink",
    "SqliteSink": "sqlite_sink",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)


if TYPE_CHECKING:
    from ..config.cloud import CloudConfig
    from .api import CloudApi
    from .core import Accepted, AckCoalescer, AckPublication, IngestCore, Judgement, Rejection
    from .ingest import Ingestor, IngestReport, IngestStats, make_sink
    from .postgres_sink import PostgresSink
    from .replies import BoardReplies
    from .role import CloudRole
    from .sink import (
        EntryQuery,
        FeedInfo,
        FeedProgress,
        Sink,
        SinkError,
        SinkReader,
        StoreResult,
    )
    from .sqlite_sink import SqliteSink
