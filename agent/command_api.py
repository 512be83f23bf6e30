"""What a plugin's own command may use: ``lichen NAME …`` from the entry-point
group ``lichen.commands`` (re-exported by :mod:`agent.plugin_api`).

A plugin registers a click command or group::

    [project.entry-points."lichen.commands"]
    ble = "lichen_ble.cli:ble_group"

and the ``lichen`` command line offers it, importing the plugin only when the
command runs. Inside it, :func:`node_view` reads the node of ``--home`` (the
root option, or ``LICHEN_HOME``): its id, its configured instances, the heads
digest it would advertise, the nodes it trusts, and what the last sync with
each saw; ``json_option`` and :func:`print_json` give it ``--json``::

    @click.command("nearby")
    @json_option
    def nearby(as_json: bool) -> None:
        node = node_view()
        ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NodeView", "json_option", "node_view", "print_json"]


@dataclass(frozen=True)
class NodeView:
    """A read-only view of the node a command runs for."""

    node_id: str
    home: Path
    config_file: str
    heads_digest: str
    trusted: frozenset[str]
    tables: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    synced: Mapping[str, str] = field(default_factory=dict)

    def instances(self, group: str, plugin: str) -> tuple[Mapping[str, Any], ...]:
        """The ``[[GROUP.PLUGIN]]`` tables of ``lichen.toml``, as written."""
        return self.tables.get(f"{group}.{plugin}", ())

    def synced_digest(self, node_id: str) -> str | None:
        """The heads digest ``node_id`` advertised when this node last synced with it."""
        return self.synced.get(node_id)


def node_view() -> NodeView:
    """The node of the current ``--home`` (errors name the fix, as every command's)."""
    from .cli.common import open_node, open_store
    from .mesh.links import heads_digest
    from .mesh.peerbook import PeerBook
    from .mesh.trust import TrustStore

    home, config, identity = open_node()
    with open_store(home, config) as store:
        digest = heads_digest(store)
    tables: dict[str, list[Mapping[str, Any]]] = {}
    for group in ("sensors", "transports", "uplinks"):
        for plugin, _index, table in config.instances(group):
            tables.setdefault(f"{group}.{plugin}", []).append(dict(table))
    book = PeerBook(home.peer_book)
    return NodeView(
        node_id=str(identity.node_id),
        home=home.path,
        config_file=config.path,
        heads_digest=digest,
        trusted=frozenset(t.node for t in TrustStore(home.trust_file).all()),
        tables={key: tuple(value) for key, value in tables.items()},
        synced={r.node: r.synced_digest for r in book.all() if r.synced_digest},
    )


def json_option(f: Any) -> Any:
    """``--json`` (the flag ``as_json``), as every data-printing command has it."""
    from .cli.common import json_option as option

    return option(f)


def print_json(data: Any) -> None:
    """Print ``data`` as the command line prints JSON."""
    from .cli.common import print_json as show

    show(data)
