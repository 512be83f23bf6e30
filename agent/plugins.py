"""Finding plugins through entry points, without importing them until configured.

Entry-point groups: ``lichen.sensors``, ``lichen.transports``, ``lichen.uplinks``,
and ``lichen.commands`` (a plugin's own ``lichen NAME …`` command: a click
command or group, imported only when that command runs). Built-in plugins
register there exactly like third-party ones.

Discovery reads the installed distributions' ``entry_points.txt`` files directly
(the format ``importlib.metadata`` reads): on a 512 MB board that saves the
2 MB and 60 ms that importing ``importlib.metadata`` and its email parser costs.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .entry import check_collection
from .errors import AddressError, ConfigError, PluginError
from .link_api import Transport, Uplink
from .schema import build, distinct_labels, instance_label
from .sensor_api import Sensor, SensorConfig

if TYPE_CHECKING:
    from .config import Config
    from .hardware import Hardware
    from .link_api import LinkAddress

__all__ = [
    "GROUPS",
    "ConfiguredPlugin",
    "ConfiguredSensor",
    "Links",
    "PluginEntry",
    "available",
    "configure_links",
    "configure_plugin",
    "configure_sensor",
    "link_plugin",
    "load_plugin",
    "parse_link_address",
]

GROUPS = {
    "sensors": "lichen.sensors",
    "transports": "lichen.transports",
    "uplinks": "lichen.uplinks",
    "commands": "lichen.commands",
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


def load_plugin(group: str, name: str, *, file: str | None = None) -> Any:
    """Import and return the plugin class registered as ``name`` in ``group``.

    A name that is not installed is a :class:`ConfigError` naming the
    ``[[group.name]]`` table (in ``file``) and the installed plugins."""
    found = available(group)
    ep = found.get(name)
    if ep is None:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise ConfigError(
            f"no {group[:-1]} plugin named {name!r} is installed",
            file=file,
            key=f"[[{group}.{name}]]",
            fix=f"{hint}installed: {', '.join(sorted(found)) or 'none'}; "
            "a third-party plugin is installed with pip",
        )
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(
            f"{group[:-1]} plugin {name!r} ({ep.value}) failed to import: {exc!r}"
        ) from exc


@dataclass(frozen=True)
class ConfiguredPlugin:
    """A transport or uplink instance whose table passed its plugin's schema;
    ``index``: its place among the plugin's ``[[GROUP.PLUGIN]]`` tables, from 0
    (or among the instances made from the plugin's addresses)."""

    group: str
    plugin: str
    cls: type[Any]
    config: Any
    index: int = 0

    @property
    def name(self) -> str:
        name: str = self.config.name
        return name

    @property
    def label(self) -> str:
        """How messages name its table (:func:`~agent.schema.instance_label`)."""
        return instance_label(self.group, self.plugin, self.index, self.name)


_BASES: dict[str, type[Transport] | type[Uplink]] = {"transports": Transport, "uplinks": Uplink}


def configure_plugin(
    group: str, plugin: str, index: int, table: dict[str, Any], file: str
) -> ConfiguredPlugin:
    """Load a transport or uplink plugin and check one instance's table."""
    cls = load_plugin(group, plugin, file=file)
    base: type[Transport] | type[Uplink] = _BASES[group]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{group[:-1]} plugin {plugin!r} does not derive from agent.plugin_api.{base.__name__}"
        )
    label = instance_label(group, plugin, index, table.get("name"))
    config = build(cls.Config, table, table=label, file=file)
    return ConfiguredPlugin(group, plugin, cls, config, index)


def _serves(cls: Any, group: str, scheme: str) -> bool:
    if group == "transports":
        return isinstance(cls, type) and issubclass(cls, Transport) and cls.scheme == scheme
    return isinstance(cls, type) and issubclass(cls, Uplink) and scheme in cls.schemes


def link_plugin(group: str, address: str) -> tuple[str, type[Any]]:
    """``(plugin name, class)`` of the installed ``transports`` or ``uplinks`` plugin
    that serves ``address``'s scheme: the plugin registered under the scheme's
    name, else the first one declaring that scheme (``mqtts`` → ``mqtt``).
    ``SCHEME:REST`` without the slashes names the plugin registered as SCHEME
    (``ble:``); its own parser then makes the canonical address."""
    scheme, sep, _ = address.partition("://")
    found = available(group)
    kind = group[:-1]
    if not sep:  # SCHEME:REST, for a scheme an installed plugin is named after (ble:…)
        short, colon, _ = address.partition(":")
        if colon and short in found:
            scheme, sep = short, colon
    if not sep or not scheme:
        raise AddressError(
            address, "has no scheme", f"write SCHEME://ADDRESS, e.g. {_EXAMPLES[group]}"
        )
    named = found.get(scheme)
    candidates = ([named] if named else []) + [e for e in found.values() if e is not named]
    for entry in candidates:
        cls = load_plugin(group, entry.name)
        if _serves(cls, group, scheme):
            return entry.name, cls
    raise AddressError(
        address,
        f"no installed {kind} plugin serves {scheme}://",
        f"installed: {', '.join(sorted(found)) or 'none'}; e.g. {_EXAMPLES[group]}",
    )


_EXAMPLES = {"transports": "tcp://192.168.1.20:7400", "uplinks": "mqtt://broker.lan:1883"}


def parse_link_address(group: str, address: str, *, listen: bool = False) -> LinkAddress:
    """``address`` parsed by the plugin that serves its scheme (see :func:`link_plugin`);
    ``listen``: a transport's address to listen at."""
    return _parse(link_plugin(group, address)[1], address, listen=listen)


def _parse(cls: type[Any], address: str, *, listen: bool) -> LinkAddress:
    parsed: LinkAddress = (
        cls.parse_address(address, listen=listen)
        if issubclass(cls, Transport)
        else cls.parse_address(address)
    )
    return parsed


@dataclass(frozen=True)
class Links:
    """The transport and uplink instances a node runs, and its static peers."""

    transports: list[ConfiguredPlugin] = field(default_factory=list)
    uplinks: list[ConfiguredPlugin] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)  # canonical addresses to dial


def configure_links(
    config: Config,
    *,
    listen: Sequence[str] = (),
    peers: Sequence[str] = (),
    uplinks: Sequence[str] = (),
) -> Links:
    """Every ``[[transports.NAME]]`` and ``[[uplinks.NAME]]`` instance, checked, with
    the command line's addresses applied (``config`` is not changed):

    * ``listen`` (``lichen run --listen``) replaces the instances of the plugin
      serving each address's scheme with one instance per address, made by the
      plugin's :meth:`~agent.link_api.Transport.config_for` from its first
      configured instance;
    * ``uplinks`` (``--uplink``) does the same for uplink plugins;
    * ``peers`` (``--peer``) are dialled as static peers, through an instance of
      the plugin serving their scheme (one that only dials out is added where
      none is configured).

    Every address is parsed by its plugin; a bad one raises
    :class:`~agent.errors.AddressError`."""
    configured = {
        group: [
            configure_plugin(group, plugin, index, table, config.path)
            for plugin, index, table in config.instances(group)
        ]
        for group in ("transports", "uplinks")
    }
    for group, instances in configured.items():
        _check_unique_names(group, instances, config.path)
    transports = _with_addresses(configured["transports"], "transports", listen)
    static: list[str] = []
    for address in peers:
        plugin, cls = link_plugin("transports", address)
        static.append(cls.parse_address(address).url)
        if not any(t.cls is cls for t in transports):
            base = _first(configured["transports"], cls)
            transports.append(
                ConfiguredPlugin("transports", plugin, cls, cls.config_for(None, None, base))
            )
    return Links(transports, _with_addresses(configured["uplinks"], "uplinks", uplinks), static)


def _check_unique_names(group: str, instances: Sequence[ConfiguredPlugin], file: str) -> None:
    seen: dict[str, ConfiguredPlugin] = {}
    for instance in instances:
        earlier = seen.get(instance.name)
        if earlier is not None:
            first, second = distinct_labels(
                group,
                (earlier.plugin, earlier.index, earlier.name),
                (instance.plugin, instance.index, instance.name),
            )
            raise ConfigError(
                f"is also the name of {first}",
                file=file,
                key=f"{second} name",
                value=instance.name,
                fix=f"give each [[{group}.*]] table its own name",
            )
        seen[instance.name] = instance


def _first(instances: Sequence[ConfiguredPlugin], cls: type[Any]) -> Any:
    return next((i.config for i in instances if i.cls is cls), None)


def _with_addresses(
    instances: list[ConfiguredPlugin], group: str, addresses: Sequence[str]
) -> list[ConfiguredPlugin]:
    """``instances`` with those of each plugin named by ``addresses`` replaced by
    one instance per address (named like its first instance, or as the plugin
    chooses, then NAME-2 …)."""
    by_plugin: dict[str, tuple[type[Any], list[LinkAddress]]] = {}
    for address in addresses:
        plugin, cls = link_plugin(group, address)
        by_plugin.setdefault(plugin, (cls, []))[1].append(_parse(cls, address, listen=True))
    kept = [i for i in instances if i.plugin not in by_plugin]
    for plugin, (cls, parsed_addresses) in by_plugin.items():
        base = _first(instances, cls)
        first: str | None = base.name if base is not None else None  # None: the plugin's
        for n, parsed in enumerate(parsed_addresses):
            config = cls.config_for(first if n == 0 else f"{first}-{n + 1}", parsed, base)
            first = first or config.name
            kept.append(ConfiguredPlugin(group, plugin, cls, config, n))
    return kept


@dataclass(frozen=True)
class ConfiguredSensor:
    """A sensor instance whose table passed its plugin's schema; ``index``: its
    place among the plugin's ``[[sensors.PLUGIN]]`` tables, from 0."""

    plugin: str
    cls: type[Sensor]
    config: SensorConfig
    index: int

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def label(self) -> str:
        """How messages name its table (:func:`~agent.schema.instance_label`)."""
        return instance_label("sensors", self.plugin, self.index, self.config.name)

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
    cls = load_plugin("sensors", plugin, file=file)
    if not (isinstance(cls, type) and issubclass(cls, Sensor)):
        raise PluginError(f"sensor plugin {plugin!r} does not derive from agent.plugin_api.Sensor")
    where = instance_label("sensors", plugin, index, table.get("name"))
    config = build(cls.Config, table, table=where, file=file)
    configured = ConfiguredSensor(plugin, cls, config, index)
    try:
        check_collection(configured.collection)
    except ValueError as exc:
        key = "name" if config.collection is None else "collection"
        raise ConfigError(str(exc), file=file, key=f"{where} {key}") from None
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
            raise ConfigError(str(exc), file=file, key=where) from None
    return configured
