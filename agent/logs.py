"""Structured logs on stdout, one line per event, for journald and for people.

Lines are logfmt (``key=value``), easy to grep and parse::

    2026-11-23T10:00:00.123Z level=info logger=lichen.agent msg=started node=lc1q3vz… sensors=3

Pass fields with :func:`event`: ``event(log, "stored", entries=3)``.

Under systemd, when the stream we write to is the journal (``$JOURNAL_STREAM``
names its device and inode, see :func:`is_journal`), each line starts with its
syslog priority instead of a time of its own (journald stamps every line, so
``journalctl`` shows one time, and ``journalctl -u lichen -p err`` works)::

    <6>level=info logger=lichen.agent msg=started node=lc1q3vz… sensors=3
    <3>level=error logger=lichen.runtime msg="sensor failed" sensor=probe error=…
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any

__all__ = [
    "JournalFormatter",
    "LogfmtFormatter",
    "event",
    "is_journal",
    "journal_priority",
    "setup_logging",
]


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def journal_priority(level: int) -> int:
    """The syslog priority (``sd-daemon.h``'s ``<N>`` prefix) of a logging level:
    debug 7, info 6, warning 4, error 3, critical 2."""
    if level >= logging.CRITICAL:
        return 2
    if level >= logging.ERROR:
        return 3
    if level >= logging.WARNING:
        return 4
    if level >= logging.INFO:
        return 6
    return 7


def is_journal(stream: IO[Any]) -> bool:
    """Whether ``stream`` is connected to journald: systemd sets ``$JOURNAL_STREAM``
    to ``DEVICE:INODE`` of the stream it connected, and a redirection (``lichen run
    > file`` inside a unit) makes them differ."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # no fd (a test's StringIO), a bad value
        return False


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z {self.fields(record)}"

    def fields(self, record: logging.LogRecord) -> str:
        parts = [
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts.extend(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(f"error={_quote(repr(record.exc_info[1]))}")
        return " ".join(parts)


class JournalFormatter(LogfmtFormatter):
    """Logfmt with the syslog priority in front and no time (journald adds it)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{journal_priority(record.levelno)}>{self.fields(record)}"


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log ``msg`` with ``fields`` as ``key=value`` pairs."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})


def setup_logging(level: str = "info") -> None:
    """Log lines to stdout at ``level``: priority-prefixed for journald when stdout
    is the journal, else with a UTC time."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JournalFormatter() if is_journal(sys.stdout) else LogfmtFormatter())
    root = logging.getLogger("lichen")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
