"""Finding plugins through entry points, without importing them until configured.

Entry-point groups: ``lichen.sensors``, ``lichen.transports``, ``lichen.uplinks``.
Built-in plugins register there exactly like third-party ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .entry import check_collection
from .errors import ConfigError, PluginError
from .plugin_api import Sensor, SensorConfig
from .schema import build

__all__ = ["GROUPS", "ConfiguredSensor", "available", "configure_sensor", "load_plugin"]

GROUPS = {
    "sensors": "lichen.sensors",
    "transports": "lichen.transports",
    "uplinks": "lichen.uplinks",
}


def available(group: str) -> dict[str, EntryPoint]:
    """Installed plugins of ``group`` (``sensors`` …) by name; nothing is imported."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[group])}


def load_plugin(group: str, name: str) -> Any:
    """Import and return the plugin class registered as ``name`` in ``group``."""
    found = available(group)
    ep = found.get(name)
    if ep is None:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise PluginError(
            f"no {group[:-1]} plugin named {name!r} is installed. Fix: {hint}installed: "
            f"{', '.join(sorted(found)) or 'none'}; a third-party plugin is installed with pip"
        )
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(
            f"{group[:-1]} plugin {name!r} ({ep.value}) failed to import: {exc!r}"
        ) from exc


@dataclass(frozen=True)
class ConfiguredSensor:
    plugin: str
    cls: type[Sensor]
    config: SensorConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def collection(self) -> str:
        return self.config.collection or f"readings/{self.config.name}"


def configure_sensor(plugin: str, index: int, table: dict[str, Any], file: str) -> ConfiguredSensor:
    """Load sensor plugin ``plugin`` and check instance ``index``'s table against its schema."""
    cls = load_plugin("sensors", plugin)
    if not (isinstance(cls, type) and issubclass(cls, Sensor)):
        raise PluginError(f"sensor plugin {plugin!r} does not derive from agent.plugin_api.Sensor")
    config = build(cls.Config, table, table=f"[[sensors.{plugin}]] #{index + 1}", file=file)
    configured = ConfiguredSensor(plugin, cls, config)
    try:
        check_collection(configured.collection)
    except ValueError as exc:
        raise ConfigError(
            str(exc), file=file, key=f"[[sensors.{plugin}]] #{index + 1} name"
        ) from None
    return configured
