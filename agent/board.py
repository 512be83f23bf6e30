"""Board profiles (``boards/<name>.toml``) and the starter ``lichen.toml`` built from one.

A profile is data: what the board is, which radios it has, its limits (the
defaults written into a new configuration) and default sensor instances.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["BoardProfile", "list_boards", "load_board", "render_starter_config"]

_PACKAGE = "agent.boards"


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    ram_mb: int
    cores: int
    radios: dict[str, bool] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    sensors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def list_boards() -> list[str]:
    root = importlib.resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_board(name: str) -> BoardProfile:
    """Load a profile; an unknown name is refused with the list of known boards."""
    resource = importlib.resources.files(_PACKAGE) / f"{name}.toml"
    if not resource.is_file():
        raise ConfigError(
            f"unknown board {name!r}",
            key="--board",
            fix=f"use one of: {', '.join(list_boards())}",
        )
    data = tomllib.loads(resource.read_text("utf-8"))
    board = data.get("board", {})
    return BoardProfile(
        name=board.get("name", name),
        description=board.get("description", ""),
        ram_mb=int(board.get("ram_mb", 0)),
        cores=int(board.get("cores", 1)),
        radios=dict(data.get("radios", {})),
        limits=dict(data.get("limits", {})),
        sensors={k: list(v) for k, v in data.get("sensors", {}).items()},
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_starter_config(board: BoardProfile, name: str, node_id: str) -> str:
    """A commented starter ``lichen.toml`` for ``board``."""
    limits = board.limits
    lines = [
        f"# lichen.toml — configuration of node {name!r} ({node_id}).",
        "# Checked at every start: a wrong key or value stops the agent with a message",
        "# naming the key and the fix. Keys and defaults: docs/operations.md.",
        "",
        "[node]",
        f"name = {_toml_value(name)}",
        '# "board" samples and syncs; "mule" carries others\' data; "cloud" ingests.',
        'role = "board"',
        f"board = {_toml_value(board.name)}",
        "",
        "[log]",
        "# Seconds between batched writes: one signed entry per sensor per interval.",
        f"flush_interval = {_toml_value(float(limits.get('flush_interval', 1.0)))}",
        '# "normal": an acknowledged entry survives a crash or kill -9.',
        '# "full": it also survives a power cut (one fsync per group commit).',
        f"durability = {_toml_value(limits.get('durability', 'normal'))}",
        "# Largest entry in bytes; bigger reading batches are split.",
        "max_entry_size = 16384",
        "",
    ]
    if board.sensors:
        lines.append(f"# Sensors from the board profile {board.name!r}; one table per instance.")
        for plugin, tables in sorted(board.sensors.items()):
            for table in tables:
                lines.append(f"[[sensors.{plugin}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
                lines.append("")
    else:
        lines += [
            "# Sensors: one [[sensors.PLUGIN]] table per instance. `lichen plugins list`",
            "# shows what is installed; each plugin's README shows its keys. Example:",
            "# [[sensors.sim]]",
            '# name = "climate"',
            '# kind = "climate"',
            "",
        ]
    return "\n".join(lines)
