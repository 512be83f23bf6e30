"""The log store: SQLite in WAL mode, one writer, group commit.

The public names are imported lazily (:func:`agent.lazy.lazy_exports`), so
importing one submodule — :mod:`agent.store.verify_workers` in an
entry-checking process — does not load SQLite, asyncio and the writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__all__ = [
    "Document",
    "Draft",
    "Fault",
    "FeedHead",
    "ForkRecord",
    "InsertOutcome",
    "LogStore",
    "LogWriter",
    "VerifyReport",
    "WriteCommand",
    "verify_log",
]

_WHERE = {
    "WriteCommand": "commands",
    "Document": "documents",
    "Draft": "log_store",
    "FeedHead": "log_store",
    "ForkRecord": "log_store",
    "InsertOutcome": "log_store",
    "LogStore": "log_store",
    "Fault": "verify",
    "VerifyReport": "verify",
    "verify_log": "verify",
    "LogWriter": "writer",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

if TYPE_CHECKING:
    from .commands import WriteCommand
    from .documents import Document
    from .log_store import Draft, FeedHead, ForkRecord, InsertOutcome, LogStore
    from .verify import Fault, VerifyReport, verify_log
    from .writer import LogWriter
