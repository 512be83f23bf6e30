"""The log store: SQLite in WAL mode, one writer, group commit."""

from .commands import WriteCommand
from .documents import Document
from .log_store import Draft, FeedHead, ForkRecord, InsertOutcome, LogStore
from .verify import Fault, VerifyReport, verify_log
from .writer import LogWriter

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
