"""``lichen.toml``: the node's configuration, checked at start.

Layout::

    [node]            name, role, board
    [log]             flush_interval, max_entry_size, durability, max_pending
    [gpio]            pin_factory, buses
    [mesh]            gossip: accept, live, max_sessions, intervals, budgets
    [uplink]          to the cloud: priorities, low_share, max_unacked, resend_after
    [retention]       keep_after_ack, quota, min_free, ack_from, interval
    [clock]           rtc, max_forward, max_age, min_step: time beacons (docs/time.md)
    [cloud]           the ingestion role (lichen cloud): broker, sink, trust (docs/cloud.md)
    [mule]            the mule exchange a board serves to phones (docs/field.md)
    [http]            the board's dashboard: listen, token_on_loopback (docs/dashboard.md)
    [[sensors.NAME]]  one table per sensor instance of plugin NAME
    [[transports.NAME]], [[uplinks.NAME]]   likewise for radios and uplinks

Plugin tables are kept as raw tables here and checked against the plugin's own
schema when the plugin is configured (see :mod:`agent.plugins`), so a node
never imports plugin code it does not use.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..entry import DEFAULT_MAX_ENTRY_SIZE
from ..errors import ConfigError
from ..schema import build, setting
from ..uplink.config import RetentionConfig, UplinkSettings, parse_duration
from .cloud import CloudConfig
from .http import HttpConfig
from .mule import MuleConfig

__all__ = [
    "PLUGIN_GROUPS",
    "ClockConfig",
    "Config",
    "GpioConfig",
    "HttpConfig",
    "LogConfig",
    "MeshConfig",
    "NodeConfig",
    "load_config",
    "parse_config",
]

PLUGIN_GROUPS = ("sensors", "transports", "uplinks")


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    name: str = setting("", help='a label for people, e.g. name = "shed-1"')
    role: Literal["board", "mule", "cloud"] = setting(
        "board", help='role = "board", "mule" or "cloud"'
    )
    board: str = setting("generic", help="a profile from `lichen init --list-boards`")


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    flush_interval: float = setting(
        1.0, min=0.01, max=3600.0, help="seconds between batched writes, e.g. flush_interval = 1.0"
    )
    max_entry_size: int = setting(
        DEFAULT_MAX_ENTRY_SIZE,
        min=1024,
        max=1 << 20,
        help="bytes, between 1024 and 1048576 (default 16384)",
    )
    durability: Literal["normal", "full"] = setting(
        "normal", help='durability = "normal" (survives crashes) or "full" (survives power loss)'
    )
    max_pending: int = setting(10_000, min=10, help="readings held per collection between flushes")


@dataclass(frozen=True, kw_only=True)
class GpioConfig:
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native", "mock"] | None = setting(
        None,
        help='pin_factory = "lgpio" (or "rpigpio", "pigpio", "native", "mock"); '
        "leave it out to let gpiozero choose",
    )
    buses: list[str] = setting(
        default_factory=list,
        help='buses enabled on this board (config.txt), e.g. buses = ["i2c1", "uart0"]: '
        "no sensor may use their pins as plain pins",
    )


def _check_budgets(budgets: dict[str, str]) -> None:
    for scheme, text in budgets.items():
        parse_budget(scheme, text)


def parse_budget(scheme: str, text: str) -> tuple[int, int | None]:
    """``"2"`` or ``"2/5MB"`` (sessions, and bytes per hour with K/M/G) → numbers."""
    sessions, _, volume = text.partition("/")
    units = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3}
    try:
        count = int(sessions)
        per_hour = None
        if volume:
            number = volume.upper().removesuffix("B")
            unit = number[-1] if number and number[-1] in "KMG" else ""
            per_hour = int(float(number.removesuffix(unit)) * units[unit])
        if count < 1 or (per_hour is not None and per_hour < 1):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(
            f"budget {scheme} = {text!r} is not SESSIONS or SESSIONS/BYTES-PER-HOUR, "
            'e.g. "2" or "1/5MB"'
        ) from None
    return count, per_hour


@dataclass(frozen=True, kw_only=True)
class MeshConfig:
    accept: Literal["trusted", "any"] = setting(
        "trusted", help='accept = "trusted" (peers in `lichen trust list`) or "any"'
    )
    live: bool = setting(
        True, help="live = true keeps sessions open and pushes new entries at once"
    )
    max_sessions: int = setting(4, min=1, max=64, help="max_sessions = 4 (1 to 64)")
    sync_interval: float = setting(
        60.0, min=1.0, help="sync_interval = 60.0 (seconds between syncs with a peer)"
    )
    stall_timeout: float = setting(
        60.0, min=1.0, help="stall_timeout = 60.0 (seconds a silent peer is waited for)"
    )
    budgets: dict[str, str] = setting(
        default_factory=dict, check=_check_budgets, help='budgets = { ble = "1/5MB" }'
    )
    max_handshakes: int = setting(
        16,
        min=1,
        max=1024,
        help="max_handshakes = 16: incoming handshakes in progress at once "
        "(a quarter of them from one host)",
    )
    handshake_rate: float = setting(
        20.0,
        min=0.1,
        max=10000.0,
        help="handshake_rate = 20.0: incoming handshakes per second from hosts no "
        "trusted peer was seen at (what an anonymous flood can make this node spend)",
    )
    host_handshake_rate: float = setting(
        2.0,
        min=0.01,
        max=10000.0,
        help="host_handshake_rate = 2.0: incoming handshakes per second from one host "
        "(a burst of four times as many)",
    )
    handshake_timeout: float = setting(
        10.0,
        min=1.0,
        max=300.0,
        help="handshake_timeout = 10.0: seconds an incoming handshake may take",
    )


def _check_duration(text: str) -> None:
    parse_duration(text)


@dataclass(frozen=True, kw_only=True)
class ClockConfig:
    """How a board takes the time from its clouds' beacons (``docs/time.md``)."""

    rtc: bool | None = setting(
        None,
        help="rtc = false: this board has no real-time clock and takes the time from its "
        "clouds' beacons; true: it keeps its own; leave it out to let the board profile say",
    )
    max_forward: str = setting(
        "1h",
        check=_check_duration,
        help='max_forward = "1h": the largest forward correction once the clock was '
        "corrected since boot (the first one of a boot has no limit)",
    )
    max_age: float = setting(
        60.0, min=0.0, help="max_age = 60.0: seconds after its arrival a beacon is still taken"
    )
    min_step: float = setting(
        1.0, min=0.0, help="min_step = 1.0: seconds of difference below which nothing is corrected"
    )

    @property
    def max_forward_ms(self) -> int:
        return int(parse_duration(self.max_forward) * 1000)


@dataclass(frozen=True)
class Config:
    """A checked configuration. ``plugins[group][name]`` lists raw instance tables."""

    node: NodeConfig = field(default_factory=NodeConfig)
    log: LogConfig = field(default_factory=LogConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    mule: MuleConfig = field(default_factory=MuleConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    plugins: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    path: str = "lichen.toml"

    def instances(self, group: str) -> list[tuple[str, int, dict[str, Any]]]:
        """``(plugin, index, table)`` for every configured instance in ``group``."""
        return [
            (name, i, table)
            for name, tables in sorted(self.plugins.get(group, {}).items())
            for i, table in enumerate(tables)
        ]


def parse_config(text: str, file: str = "lichen.toml") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    known = {"node", "log", "gpio", "mesh", "uplink", "retention", "cloud", "mule", "clock",
             "http", *PLUGIN_GROUPS}  # fmt: skip
    for key in data:
        if key not in known:
            raise ConfigError(
                "unknown table", file=file, key=f"[{key}]", fix=f"known: {', '.join(sorted(known))}"
            )
    node = build(NodeConfig, data.get("node", {}), table="[node]", file=file)
    log = build(LogConfig, data.get("log", {}), table="[log]", file=file)
    gpio = build(GpioConfig, data.get("gpio", {}), table="[gpio]", file=file)
    mesh = build(MeshConfig, data.get("mesh", {}), table="[mesh]", file=file)
    uplink = build(UplinkSettings, data.get("uplink", {}), table="[uplink]", file=file)
    retention = build(RetentionConfig, data.get("retention", {}), table="[retention]", file=file)
    cloud = build(CloudConfig, data.get("cloud", {}), table="[cloud]", file=file)
    mule = build(MuleConfig, data.get("mule", {}), table="[mule]", file=file)
    clock = build(ClockConfig, data.get("clock", {}), table="[clock]", file=file)
    http = build(HttpConfig, data.get("http", {}), table="[http]", file=file)
    plugins: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for group in PLUGIN_GROUPS:
        section = data.get(group, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{group}] must hold [[{group}.NAME]] tables", file=file)
        for name, value in section.items():
            # [sensors.x] is accepted as a single instance
            tables = [value] if isinstance(value, dict) else value
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise ConfigError(
                    f"must be a table, or a list of [[{group}.{name}]] tables",
                    file=file,
                    key=f"[{group}.{name}]",
                )
            plugins.setdefault(group, {})[name] = tables
    return Config(
        node=node,
        log=log,
        gpio=gpio,
        mesh=mesh,
        uplink=uplink,
        retention=retention,
        cloud=cloud,
        mule=mule,
        clock=clock,
        http=http,
        plugins=plugins,
        path=file,
    )


def load_config(path: Path) -> Config:
    """Read and check ``path``. A missing file says how to create one."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "no configuration here", file=str(path), fix="run `lichen init` to write a starter one"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    return parse_config(text, str(path))
