"""A node's home directory: everything a node is, in one place.

::

    HOME/lichen.toml      configuration (written by `lichen init`, edited by people)
    HOME/identity.key     the node's secret key (mode 0600)
    HOME/log.db           the log (SQLite, WAL mode: also log.db-wal, log.db-shm)
    HOME/state/           small node-local state: trust.json (who may connect),
                          fleet.json (the fleet it is in), invites.json (the
                          invites it made), peers.json (the peer book), http-token
                          (the dashboard's access token, 0600), plugins' own files
    HOME/run/status.json  the running agent's status snapshot

The home is chosen by ``--home DIR``, else ``$LICHEN_HOME``, else
``$XDG_DATA_HOME/lichen`` (``~/.local/share/lichen``). Boards installed by the
provisioning files run with ``LICHEN_HOME=/var/lib/lichen``.

The home is private to the node's user: the directory is 0700, and
``lichen.toml`` (it may hold a broker password) and the log's files 0600, like
the key. ``lichen init`` makes them so; ``lichen run`` tightens a home whose
modes are looser (:meth:`Home.tighten`) and says so.

A lost ``identity.key`` next to a log that holds entries is never replaced
silently (:func:`lost_identity`): a new key is a new node, and its feed must
not start in the old node's log. ``lichen init --new-identity`` first moves the
old log aside (:meth:`Home.move_log_aside`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "Home", "default_home", "lost_identity"]

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600

_LOG_SUFFIXES = ("", "-wal", "-shm")  # SQLite's WAL files follow the database's name


def default_home() -> Path:
    env = os.environ.get("LICHEN_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "lichen"


@dataclass(frozen=True)
class Home:
    path: Path

    @classmethod
    def resolve(cls, option: str | os.PathLike[str] | None = None) -> Home:
        return cls(Path(option) if option else default_home())

    @property
    def config(self) -> Path:
        return self.path / "lichen.toml"

    @property
    def identity(self) -> Path:
        return self.path / "identity.key"

    @property
    def database(self) -> Path:
        return self.path / "log.db"

    @property
    def state(self) -> Path:
        return self.path / "state"

    @property
    def trust_file(self) -> Path:
        return self.path / "state" / "trust.json"

    @property
    def fleet_file(self) -> Path:
        """The fleet this node is in (``lichen fleet init`` / ``join``)."""
        return self.path / "state" / "fleet.json"

    @property
    def invites_file(self) -> Path:
        """The invites this node made (their secrets: mode 0600)."""
        return self.path / "state" / "invites.json"

    @property
    def peer_book(self) -> Path:
        return self.path / "state" / "peers.json"

    @property
    def http_token(self) -> Path:
        """The dashboard's local access token (``lichen http token``)."""
        return self.path / "state" / "http-token"

    @property
    def status_file(self) -> Path:
        return self.path / "run" / "status.json"

    def exists(self) -> bool:
        return self.identity.exists()

    def private_files(self) -> list[Path]:
        """The configuration and the log's files (the key is checked on its own)."""
        log = self.database
        return [self.config, *(log.with_name(log.name + suffix) for suffix in _LOG_SUFFIXES)]

    def tighten(self) -> tuple[list[tuple[Path, int, int]], list[tuple[Path, str]]]:
        """Take group and other permissions off the home and its private files.
        Returns what changed, ``(path, was, now)``, and what could not be changed,
        ``(path, reason)`` (a home owned by another user)."""
        changed: list[tuple[Path, int, int]] = []
        failed: list[tuple[Path, str]] = []
        for path in (self.path, *self.private_files()):
            try:
                was = stat.S_IMODE(path.stat().st_mode)
                if was & 0o077:
                    os.chmod(path, was & 0o700)
                    changed.append((path, was, was & 0o700))
            except FileNotFoundError:
                continue
            except OSError as exc:
                failed.append((path, exc.strerror or str(exc)))
        return changed, failed

    def create(self) -> None:
        """Make the home directory (0700) and an empty log file (0600) if missing.
        SQLite gives the log's WAL files the mode of the log, so they are 0600 too."""
        self.path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        try:
            fd = os.open(self.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:
            return
        os.fchmod(fd, PRIVATE_FILE)  # O_CREAT honours the umask
        os.close(fd)

    def log_entries(self) -> int | None:
        """Entries in the log (0 without one); None if it cannot be read."""
        try:
            if self.database.stat().st_size == 0:
                return 0
        except FileNotFoundError:
            return 0
        try:
            uri = self.database.absolute().as_uri() + "?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                (count,) = db.execute("SELECT count(*) FROM entries").fetchone()
        except sqlite3.Error:
            return None
        return int(count)

    def move_log_aside(self) -> Path:
        """Rename the log (and its WAL files, which follow its name) to
        ``log.db.orphan-<UTC time>``; return the new path of the database."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path / f"{self.database.name}.orphan-{stamp}"
        for suffix in _LOG_SUFFIXES:
            source = self.database.with_name(self.database.name + suffix)
            if source.exists():
                source.rename(target.with_name(target.name + suffix))
        return target

    def recorded_node_id(self) -> str | None:
        """The node id ``lichen init`` wrote into ``lichen.toml``'s first line, if any."""
        try:
            with self.config.open(encoding="utf-8") as f:
                first = f.readline()
        except (OSError, UnicodeDecodeError):
            return None
        found = re.search(r"\((lc1[a-z2-7]{55})\)", first)
        return found.group(1) if found else None


def lost_identity(home: Home) -> str | None:
    """If ``home`` has a log with entries but no ``identity.key``: what happened and
    the fixes (restore the key, or a new identity by name); else None."""
    if home.identity.exists() or not home.database.exists():
        return None
    count = home.log_entries()
    if count == 0:
        return None  # nothing was ever written: nothing to mix
    held = "a log that cannot be read" if count is None else f"{count} entries"
    node = home.recorded_node_id()
    whose = f" (node {node}, per lichen.toml)" if node else ""
    return (
        f"{home.identity} is missing, but {home.database} holds {held}{whose}. A new key "
        "would be a new node writing into the old node's log, so none was made. Fix: "
        f"restore identity.key from a backup of this node (chmod 600 {home.identity}); "
        "or, to start over as a new node, run "
        f"`lichen --home {home.path} init --new-identity`, which moves the old log aside "
        f"to {home.database.name}.orphan-<time> (nothing is deleted)"
    )
