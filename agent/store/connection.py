"""Opening the log database: pragmas, durability, migrations, error mapping.

Durability (``log.durability`` in ``lichen.toml``):

``normal``  ``synchronous=NORMAL`` in WAL mode. A commit reaches the operating
            system before it is acknowledged: a process crash or ``kill -9``
            loses nothing acknowledged. A power cut may lose the last commits
            (never corrupts the file). Fewer fsyncs: kinder to SD cards.
``full``    ``synchronous=FULL``: the WAL is fsynced at every commit, so an
            acknowledged entry also survives power loss. Group commit keeps the
            cost to one fsync per batch, not per entry.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StoreError
from .schema import migrate

__all__ = ["DURABILITY", "map_sqlite_errors", "open_database"]

DURABILITY = {"normal": "NORMAL", "full": "FULL"}
BUSY_TIMEOUT_S = 30.0
CACHE_KIB = 512


@contextlib.contextmanager
def map_sqlite_errors(path: Path | str, action: str) -> Iterator[None]:
    """Translate sqlite3 errors into :class:`StoreError` naming the file and the action."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "disk is full" in text or "database or disk is full" in text:
            raise StoreError(
                f"{path}: disk full while {action}; the batch was rolled back and nothing "
                "already stored was lost. Fix: free space or lower the retention quota"
            ) from exc
        if "locked" in text or "busy" in text:
            raise StoreError(
                f"{path}: database stayed locked by another process while {action} "
                f"(waited {BUSY_TIMEOUT_S:.0f} s)"
            ) from exc
        raise StoreError(f"{path}: {action} failed: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path}: not a Lichen database, or corrupt ({exc}) while {action}. "
            "Fix: restore it from a peer or a bundle; `lichen log verify` tells what is intact"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError(f"{path}: disk full while {action}") from exc
        raise


def _set_wal(conn: sqlite3.Connection, path: Path) -> None:
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode.lower() != "wal":
        raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")


def _retry_while_locked(step: Callable[[], None]) -> None:
    """Run ``step``, retrying while another connection holds a lock SQLite's busy
    handler does not wait for (two processes creating one database at once)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def open_database(
    path: Path, *, durability: str = "normal", readonly: bool = False
) -> sqlite3.Connection:
    """Open (creating and migrating when writable) the log database at ``path``."""
    if durability not in DURABILITY:
        raise StoreError(f"durability {durability!r} must be one of {sorted(DURABILITY)}")
    if readonly and not path.exists():
        raise StoreError(f"{path}: no log database here. Fix: run `lichen init` first")
    with map_sqlite_errors(path, "opening the log"):
        if readonly:
            uri = f"file:{path}?mode=ro"
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        try:
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            if not readonly:
                _retry_while_locked(lambda: _set_wal(conn, path))
                conn.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
                _retry_while_locked(lambda: migrate(conn, str(path)))
            else:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if version == 0:
                    raise StoreError(f"{path}: empty database. Fix: run `lichen init` first")
        except BaseException:
            conn.close()
            raise
    return conn
