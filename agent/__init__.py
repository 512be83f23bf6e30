"""Lichen's core: identity, signed entries, the log store, the clock, the runtime.

The public API is re-exported here and imported lazily, so ``import agent``
stays cheap on a Pi Zero (the CLI pays only for what a command uses)::

    from agent import Identity, LogStore, HybridClock, Draft
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__all__ = [
    "Agent",
    "BadSignature",
    "ChainError",
    "Config",
    "ConfigError",
    "Document",
    "Draft",
    "EncodingError",
    "Entry",
    "EntryError",
    "FeedHead",
    "FieldSpec",
    "ForkError",
    "Home",
    "HybridClock",
    "Identity",
    "IdentityError",
    "InsertOutcome",
    "LichenError",
    "LogStore",
    "LogWriter",
    "MalformedEntry",
    "NodeId",
    "OversizedEntry",
    "PluginError",
    "Reading",
    "Sensor",
    "SensorConfig",
    "SensorContext",
    "StoreError",
    "decode_entry",
    "load_config",
    "load_identity",
    "sign_entry",
    "verify_entry",
    "verify_log",
]

_WHERE = {
    "Agent": "runtime.agent",
    "Config": "config",
    "load_config": "config",
    "Document": "store.documents",
    "Draft": "store.log_store",
    "FeedHead": "store.log_store",
    "InsertOutcome": "store.log_store",
    "LogStore": "store.log_store",
    "LogWriter": "store.writer",
    "verify_log": "store.verify",
    "Entry": "entry",
    "decode_entry": "entry",
    "sign_entry": "entry",
    "verify_entry": "entry",
    "FieldSpec": "readings",
    "Reading": "readings",
    "Home": "home",
    "HybridClock": "clock",
    "Identity": "identity",
    "NodeId": "identity",
    "load_identity": "identity",
    "Sensor": "sensor_api",
    "SensorConfig": "sensor_api",
    "SensorContext": "sensor_api",
}
for _name in __all__:
    _WHERE.setdefault(_name, "errors")


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)


if TYPE_CHECKING:
    from .clock import HybridClock
    from .config import Config, load_config
    from .entry import Entry, decode_entry, sign_entry, verify_entry
    from .errors import (
        BadSignature,
        ChainError,
        ConfigError,
        EncodingError,
        EntryError,
        ForkError,
        IdentityError,
        LichenError,
        MalformedEntry,
        OversizedEntry,
        PluginError,
        StoreError,
    )
    from .home import Home
    from .identity import Identity, NodeId, load_identity
    from .readings import FieldSpec, Reading
    from .runtime.agent import Agent
    from .sensor_api import Sensor, SensorConfig, SensorContext
    from .store.documents import Document
    from .store.log_store import Draft, FeedHead, InsertOutcome, LogStore
    from .store.verify import verify_log
    from .store.writer import LogWriter
