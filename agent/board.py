"""Board profiles (``boards/<name>.toml``) and the starter ``lichen.toml`` built from one.

A profile is data: what the board is, which radios it has, its GPIO pins (names,
reserved pins, buses), its limits (the defaults written into a new
configuration) and default sensor instances. A profile may name a ``base``
(files starting with ``_`` are bases, not boards); its tables are merged over
the base's, key by key.

Pins resolve like ESPHome's: a GPIO number (``17``), or a name from the board's
table (``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"SDA"``), case-insensitive.
A name the board does not know fails with ``Cannot resolve pin name 'X' for
board Y`` and the closest known names.

Buses are tables too (``[buses.i2c1]``): their kind (``i2c``, ``spi``,
``uart``, ``w1``), the pins they take by role (``SDA = 2``), SPI chip
selects, the device the kernel makes for them and the ``config.txt`` line
that enables them. A board whose buses have no known pins (``generic``) says
``any = true``: ``i2c3`` is then bus 3 of that kind, ``/dev/i2c-3``.
"""

from __future__ import annotations

import difflib
import importlib.resources
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = [
    "BUS_KINDS",
    "BoardProfile",
    "Bus",
    "detect_board",
    "list_boards",
    "load_board",
    "render_starter_config",
    "resolve_pin",
]

_PACKAGE = "agent.boards"
#: bus kinds, as people say them
BUS_KINDS = {"i2c": "I²C", "spi": "SPI", "uart": "UART", "w1": "1-Wire"}


@dataclass(frozen=True)
class Bus:
    """A bus of the board: its pins by role, and how the kernel gives it."""

    name: str
    kind: str
    #: role → GPIO number (``SDA`` → 2): what the bus takes once enabled
    pins: dict[str, int] = field(default_factory=dict)
    #: SPI chip selects (``CE0`` → 8): a device on the bus claims its own
    selects: dict[str, int] = field(default_factory=dict)
    #: the device node or sysfs directory the kernel makes (``/dev/i2c-1``)
    device: str = ""
    #: the ``config.txt`` line that enables it (``dtparam=i2c_arm=on``)
    enable: str = ""

    @property
    def label(self) -> str:
        """``I²C bus i2c1``."""
        return f"{BUS_KINDS.get(self.kind, self.kind)} bus {self.name}"

    def role(self, number: int) -> str | None:
        """The role of GPIO ``number`` on this bus (``SDA``, ``CE0``), or None."""
        for role, pin in (*self.pins.items(), *self.selects.items()):
            if pin == number:
                return role
        return None

    def on_pin(self, number: int, role: str | None = None) -> Bus:
        """This bus moved to GPIO ``number`` (a one-pin bus: ``dtoverlay=w1-gpio,gpiopin=N``)."""
        if len(self.pins) != 1:
            raise ValueError(f"{self.label} has {len(self.pins)} pins; only a one-pin bus moves")
        (default_role,) = self.pins
        enable = self.enable
        if self.kind == "w1" and enable and number != self.pins[default_role]:
            enable = f"{enable},gpiopin={number}"
        return Bus(self.name, self.kind, {role or default_role: number}, {}, self.device, enable)


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    ram_mb: int
    cores: int
    radios: dict[str, bool] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    sensors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: GPIO numbers on the board (empty: no GPIO)
    gpio: tuple[int, ...] = ()
    #: pin names (upper case) → GPIO number
    pins: dict[str, int] = field(default_factory=dict)
    #: GPIO number → why no plugin may use it
    reserved: dict[int, str] = field(default_factory=dict)
    #: bus name → the bus
    buses: dict[str, Bus] = field(default_factory=dict)
    #: bus kinds whose buses are any number the kernel has (``i2c3`` → ``/dev/i2c-3``)
    any_buses: dict[str, Bus] = field(default_factory=dict)
    #: gpiozero pin factory to use by default (None: gpiozero's own choice)
    pin_factory: str | None = None
    #: ``/proc/device-tree/model`` prefixes of the boards this profile is for
    models: tuple[str, ...] = ()

    def bus(self, name: str) -> Bus | None:
        """Bus ``name`` (``i2c1``), or None if the board has no such bus."""
        if name in self.buses:
            return self.buses[name]
        kind = name.rstrip("0123456789")
        template = self.any_buses.get(kind)
        if template is None or kind == name:
            return None
        number = name[len(kind) :]
        return Bus(name, kind, {}, {}, template.device.replace("{n}", number), template.enable)

    def bus_names(self) -> str:
        """The buses, for messages: ``i2c1, spi0, uart0, w1`` (``i2cN`` for any number)."""
        names = [*sorted(self.buses), *(f"{kind}N" for kind in sorted(self.any_buses))]
        return ", ".join(names) or "none"

    #: whether the board keeps the time while off (a Raspberry Pi does not: it takes
    #: the time from its clouds' beacons, docs/time.md)
    rtc: bool = True


def list_boards() -> list[str]:
    root = importlib.resources.files(_PACKAGE)
    return sorted(
        p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml") and p.name[0] != "_"
    )


def _read(name: str) -> dict[str, Any]:
    resource = importlib.resources.files(_PACKAGE) / f"{name}.toml"
    if not resource.is_file():
        raise ConfigError(
            f"unknown board {name!r}",
            key="--board",
            fix=f"use one of: {', '.join(list_boards())}",
        )
    data: dict[str, Any] = tomllib.loads(resource.read_text("utf-8"))
    base = data.get("board", {}).get("base")
    if base:
        merged = _read(base)
        for table, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(table), dict):
                merged[table] = {**merged[table], **value}
            else:
                merged[table] = value
        return merged
    return data


def load_board(name: str) -> BoardProfile:
    """Load a profile; an unknown name is refused with the list of known boards."""
    if name.startswith("_"):
        raise ConfigError(f"{name!r} is a base profile, not a board", key="--board")
    data = _read(name)
    board = data.get("board", {})
    gpio = data.get("gpio", {})
    buses: dict[str, Bus] = {}
    any_buses: dict[str, Bus] = {}
    for bus_name, table in data.get("buses", {}).items():
        bus = _bus(name, bus_name, table)
        if table.get("any"):
            any_buses[bus.kind] = bus
        else:
            buses[bus_name] = bus
    return BoardProfile(
        name=board.get("name", name),
        description=board.get("description", ""),
        ram_mb=int(board.get("ram_mb", 0)),
        cores=int(board.get("cores", 1)),
        radios=dict(data.get("radios", {})),
        limits=dict(data.get("limits", {})),
        sensors={k: list(v) for k, v in data.get("sensors", {}).items()},
        gpio=tuple(int(n) for n in gpio.get("numbers", ())),
        pins={k.upper(): int(v) for k, v in data.get("pins", {}).items()},
        reserved={int(k): str(v) for k, v in data.get("reserved", {}).items()},
        buses=buses,
        any_buses=any_buses,
        pin_factory=gpio.get("pin_factory"),
        models=tuple(board.get("models", ())),
        rtc=bool(board.get("rtc", True)),
    )


def _bus(board: str, name: str, table: Any) -> Bus:
    if not isinstance(table, dict) or table.get("kind") not in BUS_KINDS:
        raise ConfigError(
            f"board profile {board!r}: bus {name!r} must be a table with kind = "
            + " or ".join(repr(k) for k in BUS_KINDS)
        )
    return Bus(
        name=name,
        kind=table["kind"],
        pins={str(k).upper(): int(v) for k, v in table.get("pins", {}).items()},
        selects={str(k).upper(): int(v) for k, v in table.get("selects", {}).items()},
        device=str(table.get("device", "")),
        enable=str(table.get("enable", "")),
    )


def detect_board(model: str) -> str | None:
    """The profile for a ``/proc/device-tree/model`` text (``Raspberry Pi 4 Model B
    Rev 1.4``): the one with the longest matching model prefix, or None."""
    model = model.strip("\x00 \n")
    best: tuple[int, str] | None = None
    for name in list_boards():
        for prefix in load_board(name).models:
            if model.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def resolve_pin(board: BoardProfile, pin: str | int) -> int:
    """The GPIO number of ``pin`` on ``board``; ValueError naming the pin, the board
    and the reason when it cannot be used."""
    if not board.gpio:
        raise ValueError(f"board {board.name!r} has no GPIO pins (pin {pin!r} was asked for)")
    if isinstance(pin, bool) or not isinstance(pin, int | str):
        raise ValueError(f"pin {pin!r} must be a GPIO number or a pin name")
    if isinstance(pin, str):
        key = pin.strip().upper()
        for prefix in ("GPIO", "BCM"):
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                key = str(int(key[len(prefix) :]))
        if key.isdigit():
            number = int(key)
        elif key in board.pins:
            number = board.pins[key]
        else:
            close = difflib.get_close_matches(key, list(board.pins), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"Cannot resolve pin name {pin!r} for board {board.name!r}{hint}")
    else:
        number = pin
    if number not in board.gpio:
        raise ValueError(
            f"pin {pin!r}: GPIO{number} does not exist on board {board.name!r} "
            f"(GPIO{min(board.gpio)}–GPIO{max(board.gpio)})"
        )
    if number in board.reserved:
        raise ValueError(f"pin {pin!r} (GPIO{number}) is reserved on board {board.name!r}: "
                         f"{board.reserved[number]}")  # fmt: skip
    return number


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


def _bus_lines(board: BoardProfile) -> list[str]:
    out = []
    for bus in board.buses.values():
        pins = ", ".join(f"{role} GPIO{n}" for role, n in {**bus.pins, **bus.selects}.items())
        out.append(f"{bus.name:6} {BUS_KINDS[bus.kind]:6} {pins}  ({bus.enable})")
    return out


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
    if board.gpio:
        lines += [
            "[gpio]",
            '# gpiozero pin factory: "lgpio", "rpigpio", "pigpio", "native" or "mock";',
            "# unset, gpiozero picks the best one installed.",
            f"pin_factory = {_toml_value(board.pin_factory)}"
            if board.pin_factory
            else '# pin_factory = "lgpio"',
            "# Buses enabled in config.txt: no sensor may use their pins as plain pins",
            "# (a sensor on a bus adds it). `lichen doctor` checks they are enabled.",
            *(f"#   {line}" for line in _bus_lines(board)),
            '# buses = ["i2c1"]',
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
