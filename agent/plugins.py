"""Finding plugins through entry points, without importing them until configured.

Entry-point groups: ``lichen.sensors``, ``lichen.transports``, ``lichen.uplinks``.
Built-in plugins register there exactly like third-party ones.

Discovery reads the installed distributions' ``entry_points.txt`` files directly
(the format ``importlib.metadata`` reads): on a 512 MB board that saves the
2 MB and 60 ms that importing ``importlib.metadata`` and its email parser costs.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .entry import check_collection
from .errors import ConfigError, PluginError
from .plugin_api import Sensor, SensorConfig, Transport, Uplink
from .schema import build

if TYPE_CHECKING:
    from .runtime.hardware import Hardware

__all__ = [
    "GROUPS",
    "ConfiguredPlugin",
    "ConfiguredSensor",
    "PluginEntry",
    "available",
    "configure_plugin",
    "configure_sensor",
    "load_plugin",
]

GROUPS = {
    "sensors": "lichen.sensors",
    "transports": "lichen.transports",
    "uplinks": "lichen.uplinks",
}


@dataclass(frozen=True)
class PluginEntry:
    """One registered plugin: ``value`` is ``module:attribute``; ``dist`` its distribution."""

    name: str
    value: str
    dist: str

    def load(self) -> Any:
        module_name, _, attribute = self.value.partition(":")
        target: Any = importlib.import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            target = getattr(target, part)
        return target


def _parse_entry_points(text: str, dist: str) -> dict[str, list[PluginEntry]]:
    groups: dict[str, list[PluginEntry]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section is not None and "=" in line:
            name, _, value = line.partition("=")
            groups.setdefault(section, []).append(PluginEntry(name.strip(), value.strip(), dist))
    return groups


def available(group: str) -> dict[str, PluginEntry]:
    """Installed plugins of ``group`` (``sensors`` …) by name; nothing is imported.
    As with ``importlib.metadata``, the first distribution found on ``sys.path`` wins."""
    wanted = GROUPS[group]
    found: dict[str, PluginEntry] = {}
    seen: set[str] = set()
    for base in sys.path:
        try:
            names = sorted(os.listdir(base or "."))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            # name-version.dist-info, or name[-version[-pyX.Y]].egg-info
            dist = name.rsplit(".", 1)[0].split("-", 1)[0]
            key = dist.lower().replace("-", "_")
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(base or ".", name, "entry_points.txt")
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            for entry in _parse_entry_points(text, dist).get(wanted, []):
                found.setdefault(entry.name, entry)
    return found


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
class ConfiguredPlugin:
    """A transport or uplink instance whose table passed its plugin's schema."""

    group: str
    plugin: str
    cls: type[Any]
    config: Any

    @property
    def name(self) -> str:
        name: str = self.config.name
        return name


_BASES: dict[str, type[Transport] | type[Uplink]] = {"transports": Transport, "uplinks": Uplink}


def configure_plugin(
    group: str, plugin: str, index: int, table: dict[str, Any], file: str
) -> ConfiguredPlugin:
    """Load a transport or uplink plugin and check one instance's table."""
    cls = load_plugin(group, plugin)
    base: type[Transport] | type[Uplink] = _BASES[group]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{group[:-1]} plugin {plugin!r} does not derive from agent.plugin_api.{base.__name__}"
        )
    config = build(cls.Config, table, table=f"[[{group}.{plugin}]] #{index + 1}", file=file)
    return ConfiguredPlugin(group, plugin, cls, config)


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


def configure_sensor(
    plugin: str,
    index: int,
    table: dict[str, Any],
    file: str,
    hardware: Hardware | None = None,
) -> ConfiguredSensor:
    """Load sensor plugin ``plugin``, check instance ``index``'s table against its
    schema and, with ``hardware``, claim the pins and buses it declares."""
    cls = load_plugin("sensors", plugin)
    if not (isinstance(cls, type) and issubclass(cls, Sensor)):
        raise PluginError(f"sensor plugin {plugin!r} does not derive from agent.plugin_api.Sensor")
    where = f"[[sensors.{plugin}]] #{index + 1}"
    config = build(cls.Config, table, table=where, file=file)
    configured = ConfiguredSensor(plugin, cls, config)
    try:
        check_collection(configured.collection)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, key=f"{where} name") from None
    claims = list(cls.claims(config))
    if claims:
        if hardware is None:
            raise ConfigError(
                f"sensor {config.name!r} uses pins {claims}, but no board hardware is known",
                file=file,
                key=where,
            )
        try:
            hardware.claim(config.name, claims)
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key=f"{where} ({config.name})") from None
    return configured
