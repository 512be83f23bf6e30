"""The running agent's status snapshot, ``HOME/run/status.json``: written every
``STATUS_INTERVAL_S``, read by ``lichen status`` (and ``peers``, ``plugins``).

A snapshot is never silently stale. The reader adds its age (``age_s``) and
``stale`` — older than ``STALE_AFTER`` intervals: the agent is frozen, or
could not write it — so ``lichen status`` can say "status is 94 s old — is
the agent running?" instead of showing old numbers as current.

The writer keeps writing through a full disk, when the status matters most:
the file is replaced atomically (a reader sees the old or the new snapshot),
and padded with spaces to a whole number of 4 KiB blocks with room to grow;
when the disk is full the new snapshot is written over the old one in place,
inside blocks the file already has. A reader that catches such a rewrite
half-way reads again.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

from .fsutil import atomic_write

__all__ = ["STALE_AFTER", "STATUS_INTERVAL_S", "read_status", "write_status"]

STATUS_INTERVAL_S = 2.0
#: a snapshot older than this many intervals is stale
STALE_AFTER = 3
_BLOCK = 4096
_ROOM = 1024  # bytes a snapshot may grow by and still be written in place
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ATTEMPTS = 5


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace the snapshot at ``path``; on a full disk, overwrite it in place.
    Raises OSError only if neither worked."""
    # compact: the C encoder (an indent would fall back to the slow Python one)
    data = json.dumps(status, separators=(",", ":"), default=str).encode()
    size = -(-(len(data) + _ROOM) // _BLOCK) * _BLOCK
    try:
        atomic_write(path, data.ljust(size), durable=False)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        _write_in_place(path, data, exc)


def _write_in_place(path: Path, data: bytes, full: OSError) -> None:
    """Write ``data`` over the file's own bytes, padded to its size (no new block)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        raise full from None
    try:
        size = os.fstat(fd).st_size
        if len(data) > size:
            raise full
        view = memoryview(data.ljust(size))
        offset = 0
        while offset < size:
            offset += os.pwrite(fd, view[offset:], offset)
    finally:
        os.close(fd)


def read_status(path: Path, *, now_ms: int | None = None) -> dict[str, Any] | None:
    """The running agent's snapshot with ``age_s`` and ``stale`` added, or None if
    no agent runs for this home (no file, a stopped agent, or its process gone)."""
    status = _load(path)
    if status is None or status.get("state") != "running":
        return None
    try:
        pid = int(status["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass  # alive, another user's
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    updated = status.get("updated_at_ms")
    interval = status.get("interval_s") or STATUS_INTERVAL_S
    age = max(0.0, (now - updated) / 1000) if isinstance(updated, int) else None
    status["age_s"] = None if age is None else round(age, 1)
    status["stale"] = age is None or age > STALE_AFTER * interval
    return status


def _load(path: Path) -> dict[str, Any] | None:
    for _ in range(_READ_ATTEMPTS):
        try:
            status = json.loads(path.read_bytes())
        except OSError:
            return None
        except ValueError:  # caught half-way through an in-place rewrite: read again
            time.sleep(0.01)
            continue
        return status if isinstance(status, dict) else None
    return None
