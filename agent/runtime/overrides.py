"""``HOME/overrides.toml``: settings changed by the cloud's commands, kept over restarts.

A command from the cloud (:mod:`agent.commands`) changes a setting in the
running agent at once, and the change is written here so that the next start
applies it too. ``lichen.toml`` is the user's and is never rewritten: this
file is laid over it at every start of ``lichen run``, and deleting a line (or
the file) goes back to what ``lichen.toml`` says. Only the keys a command may
set can appear::

    # Settings changed by commands from the cloud (lichen cloud command) …
    [log]
    flush_interval = 0.5

    [sensors.climate]
    interval = 2.0
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..commands import check_key
from ..config import Config
from ..errors import ConfigError, LichenError
from ..fsutil import atomic_write
from ..logs import event
from ..schema import replace_checked

if TYPE_CHECKING:
    from .sensors import SensorRunner

__all__ = ["FILE_NAME", "Overrides", "change_settings"]

log = logging.getLogger("lichen.agent")
FILE_NAME = "overrides.toml"
_HEADER = """\
# Settings changed by commands from the cloud (lichen cloud command). They are
# laid over lichen.toml at every start of lichen run; lichen.toml is never
# rewritten. Delete a line (or this file) to go back to what lichen.toml says.
"""


class Overrides:
    """The settings in ``path``, flat (``"sensors.climate.interval": 2.0``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = tomllib.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read: {exc}", file=str(self.path),
                fix="correct it, or delete it to go back to lichen.toml",
            ) from None  # fmt: skip
        flat: dict[str, Any] = {}
        for key, value in _flatten(data):
            try:
                check_key(key)
            except ValueError as exc:
                raise ConfigError(str(exc), file=str(self.path), key=key,
                                  fix="delete the line") from None  # fmt: skip
            flat[key] = value
        return flat

    def apply(self, config: Config) -> Config:
        """``config`` with these settings laid over it (checked as the plugin's
        schema checks ``lichen.toml`` when the agent configures it)."""
        if not self.values:
            return config
        plugins = {g: {n: [dict(t) for t in ts] for n, ts in names.items()}
                   for g, names in config.plugins.items()}  # fmt: skip
        log_config = config.log
        for key, value in self.values.items():
            if key == "log.flush_interval":
                log_config = dataclasses.replace(log_config, flush_interval=float(value))
                continue
            name = key.split(".")[1]
            tables = [t for ts in plugins.get("sensors", {}).values() for t in ts
                      if t.get("name") == name]  # fmt: skip
            if not tables:
                event(log, "an override names no sensor; ignored", logging.WARNING,
                      file=str(self.path), key=key)  # fmt: skip
            for table in tables:
                table["interval"] = value
        return dataclasses.replace(config, plugins=plugins, log=log_config)

    def set(self, changes: Mapping[str, Any]) -> None:
        """Add ``changes`` and write the file (atomically)."""
        self.values.update(changes)
        atomic_write(self.path, render(self.values).encode("utf-8"))


def change_settings(
    config: Config,
    runners: Sequence[SensorRunner],
    overrides: Overrides,
    changes: Mapping[str, Any],
) -> Config:
    """Apply ``changes`` (keys of :data:`agent.commands.ALLOWED_KEYS`) to a running
    agent, all of them or none, and return its new configuration. Each value is
    checked as ``lichen.toml`` is, the changes are written to ``overrides`` for
    the next start, then applied: a sensor's new interval restarts that instance
    (:meth:`~agent.runtime.sensors.SensorRunner.reconfigure`), the flush interval
    takes effect at the next flush (the agent reads it each turn). Raises
    ValueError or LichenError naming what is wrong."""
    log_config = config.log
    plans = []
    for key, value in changes.items():
        check_key(key)
        if key == "log.flush_interval":
            log_config = replace_checked(log_config, {"flush_interval": value},
                                         table="[log]", file="the command")  # fmt: skip
            continue
        name = key.split(".")[1]
        runner = next((r for r in runners if r.configured.name == name), None)
        if runner is None:
            raise ValueError(f"{key}: this board has no sensor instance named {name!r}")
        checked = replace_checked(runner.configured.config, {"interval": value},
                                  table=runner.configured.label, file="the command")  # fmt: skip
        plans.append((runner, dataclasses.replace(runner.configured, config=checked)))
    try:
        overrides.set(changes)
    except OSError as exc:
        raise LichenError(f"{overrides.path}: cannot write: {exc}") from None
    for runner, configured in plans:
        runner.reconfigure(configured)
    event(log, "settings changed", **{k.replace(".", "_"): v for k, v in changes.items()})
    return dataclasses.replace(config, log=log_config)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def render(values: Mapping[str, Any]) -> str:
    """The file's text for ``values`` (keys :func:`~agent.commands.check_key` allows)."""
    tables: dict[str, dict[str, Any]] = {}
    for key, value in sorted(values.items()):
        table, _, name = key.rpartition(".")
        tables.setdefault(table, {})[name] = value
    parts = [_HEADER]
    for table, items in tables.items():
        head = ".".join(f'"{p}"' if not p.replace("_", "").isalnum() else p
                        for p in table.split("."))  # fmt: skip
        lines = [f"{name} = {_toml(value)}" for name, value in items.items()]
        parts.append(f"\n[{head}]\n" + "\n".join(lines) + "\n")
    return "".join(parts)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
