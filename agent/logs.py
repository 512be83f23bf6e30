"""Structured logs on stdout, one line per event, for journald and for people.

Lines are logfmt (``key=value``), easy to grep and parse::

    2026-11-23T10:00:00.123Z level=info logger=lichen.agent msg=started node=lc1q3vz… sensors=3

Pass fields with :func:`event`: ``event(log, "stored", entries=3)``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["LogfmtFormatter", "event", "setup_logging"]


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts.extend(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(f"error={_quote(repr(record.exc_info[1]))}")
        return " ".join(parts)


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log ``msg`` with ``fields`` as ``key=value`` pairs."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger("lichen")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
