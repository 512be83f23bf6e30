"""A node's home directory: everything a node is, in one place.

::

    HOME/lichen.toml      configuration (written by `lichen init`, edited by people)
    HOME/identity.key     the node's secret key (mode 0600)
    HOME/log.db           the log (SQLite, WAL mode: also log.db-wal, log.db-shm)
    HOME/state/           small node-local state: trust.json (who may connect),
                          peers.json (the peer book), plugins' own files
    HOME/run/status.json  the running agent's status snapshot

The home is chosen by ``--home DIR``, else ``$LICHEN_HOME``, else
``$XDG_DATA_HOME/lichen`` (``~/.local/share/lichen``). Boards installed by the
provisioning files run with ``LICHEN_HOME=/var/lib/lichen``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Home", "default_home"]


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
    def peer_book(self) -> Path:
        return self.path / "state" / "peers.json"

    @property
    def status_file(self) -> Path:
        return self.path / "run" / "status.json"

    def exists(self) -> bool:
        return self.identity.exists()
