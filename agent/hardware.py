"""Board-level resources that plugins share: the board's pins, gpiozero's pin
factory and the I²C buses.

One :class:`Hardware` per agent. It resolves pin names against the board
profile, keeps track of which sensor instance claimed which pin or bus (two
instances on one pin is a configuration error, found at start), and creates
the gpiozero pin factory and the I²C buses lazily — only a node that
configures a GPIO plugin imports gpiozero, only one with an I²C sensor
smbus2. Tests pass gpiozero's ``MockFactory`` and simulated I²C buses
(:class:`agent.testing.FakeI2CBus`) in directly.

A bus is *enabled* when ``[gpio] buses`` lists it (the kernel has it, from
``config.txt``) or a sensor claims it (``"bus:i2c1"``). An enabled bus's pins
are the bus's: a sensor asking for one as a plain pin is refused at start,
with the pin, its role on the bus, who enabled the bus and the fix — in
whichever order the two were configured.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .board import BoardProfile, Bus, resolve_pin
from .errors import PluginError

if TYPE_CHECKING:
    from .i2c import I2CBus

__all__ = ["Hardware"]


class Hardware:
    """Pins, buses and the pin factory of the board the agent runs on."""

    def __init__(
        self,
        board: BoardProfile,
        *,
        pin_factory: Any = None,
        pin_factory_name: str | None = None,
        i2c: Mapping[int, I2CBus] | None = None,
        buses: Iterable[str] = (),
    ) -> None:
        self.board = board
        self._factory = pin_factory
        self._factory_name = pin_factory_name or board.pin_factory
        self._lock = threading.Lock()
        self._exclusive: dict[int, str] = {}
        self._shared: dict[int, set[str]] = {}
        #: buses given in (simulated ones, or a child's relayed ones): the only buses
        self.given_i2c: dict[int, I2CBus] | None = dict(i2c) if i2c is not None else None
        self._i2c: dict[int, I2CBus] = dict(i2c or {})
        self._enabled: dict[str, tuple[Bus, str]] = {}
        for spec in buses:
            self.enable_bus(spec)

    @property
    def pin_factory_name(self) -> str | None:
        """The configured factory's name (None: gpiozero's own choice)."""
        return self._factory_name

    def pin_factory(self) -> Any:
        """The gpiozero pin factory (created on first use)."""
        with self._lock:
            if self._factory is None:
                self._factory = _make_factory(self._factory_name)
            return self._factory

    def i2c_bus(self, number: int) -> I2CBus:
        """I²C bus ``number`` (``/dev/i2c-N`` through smbus2, opened on first use;
        or the bus given in for it). One object per bus, shared by its users."""
        with self._lock:
            bus = self._i2c.get(number)
            if bus is None:
                if self.given_i2c is not None:
                    raise PluginError(
                        f"there is no I²C bus {number} here (the buses given are: "
                        f"{', '.join(map(str, sorted(self.given_i2c))) or 'none'})"
                    )
                from .i2c import SMBusI2C

                bus = self._i2c[number] = SMBusI2C(number)
            return bus

    def close(self) -> None:
        """Release what was opened (the I²C buses)."""
        with self._lock:
            buses, self._i2c = list(self._i2c.values()), dict(self.given_i2c or {})
        for bus in buses:
            if self.given_i2c is None or bus not in self.given_i2c.values():
                bus.close()

    def resolve(self, pin: str | int) -> int:
        """The GPIO number for ``pin`` (ValueError naming pin, board and reason)."""
        return resolve_pin(self.board, pin)

    def bus(self, spec: str) -> Bus:
        """The bus ``spec`` names: ``i2c1``, or ``w1=GPIO17`` for a one-pin bus on
        another pin than its default (ValueError naming the board's buses)."""
        name, _, pin = spec.partition("=")
        bus = self.board.bus(name.strip())
        if bus is None:
            raise ValueError(
                f"board {self.board.name!r} has no bus {name.strip()!r} "
                f"(it has: {self.board.bus_names()})"
            )
        return bus.on_pin(self.resolve(pin.strip())) if pin else bus

    def enable_bus(self, spec: str, by: str = "[gpio] buses") -> Bus:
        """Mark a bus enabled on the board (``[gpio] buses``): from now on no plugin
        may claim its pins as plain pins."""
        bus = self.bus(spec)
        with self._lock:
            self._check_bus(bus, by)
            self._enabled.setdefault(bus.name, (bus, by))
        return bus

    @property
    def enabled_buses(self) -> dict[str, tuple[Bus, str]]:
        """Bus name → (the bus, who enabled it: ``[gpio] buses`` or ``sensor 'x'``)."""
        with self._lock:
            return dict(self._enabled)

    def claim(self, owner: str, pins: Iterable[str | int]) -> list[int]:
        """Claim pins (``17``, ``"GPIO17"``, ``"CE0"``) for ``owner`` alone, and buses
        (``"bus:spi0"``, ``"bus:w1=GPIO17"``) shared with other users of the bus.
        ValueError naming the pin, the bus and the fix if a pin is unknown or
        reserved, another owner holds it, or it belongs to an enabled bus (a
        chip select only to a device on that bus)."""
        buses: list[Bus] = []
        exclusive: list[tuple[str | int, int]] = []
        for pin in pins:
            if isinstance(pin, str) and pin.startswith("bus:"):
                buses.append(self.bus(pin[4:]))
            else:
                exclusive.append((pin, self.resolve(pin)))
        by = f"sensor {owner!r}"
        with self._lock:
            own = {bus.name: (bus, by) for bus in buses}
            for pin, number in exclusive:
                alone = self._exclusive.get(number)
                if alone is not None and alone != owner:
                    raise ValueError(
                        f"GPIO{number} on board {self.board.name!r} is already used by {alone!r}"
                    )
                for bus, enabler in (*self._enabled.values(), *own.values()):
                    role = bus.role(number)
                    if role is None or (role in bus.selects and bus.name in own):
                        continue
                    raise ValueError(self._taken_by_bus(pin, number, bus, role, enabler))
            for bus in buses:
                self._check_bus(bus, by, owner)
            numbers = [number for _, number in exclusive]
            for number in numbers:
                self._exclusive[number] = owner
            shared = [n for bus in buses for n in bus.pins.values()]
            for number in shared:
                self._shared.setdefault(number, set()).add(owner)
            for bus in buses:
                self._enabled.setdefault(bus.name, (bus, by))
        return numbers + shared

    def _check_bus(self, bus: Bus, by: str, owner: str | None = None) -> None:
        """Under the lock: ``bus`` may be enabled (no plain pin of another owner on it,
        not already enabled on other pins)."""
        known = self._enabled.get(bus.name)
        if known is not None and known[0].pins != bus.pins:
            raise ValueError(
                f"{bus.label} on board {self.board.name!r} is on {_pins(known[0])} for "
                f"{known[1]}, but {by} wants it on {_pins(bus)}. Fix: use one pin for the bus"
            )
        for role, number in bus.pins.items():
            alone = self._exclusive.get(number)
            if alone is not None and alone != owner:
                raise ValueError(
                    f"GPIO{number} on board {self.board.name!r} is {role} of the {bus.label}, "
                    f"which {by} uses, but {alone!r} uses it as a plain pin. Fix: move "
                    f"{alone!r} to another pin ({self._free()})"
                )

    def _taken_by_bus(self, pin: str | int, number: int, bus: Bus, role: str, by: str) -> str:
        if by.startswith("["):
            enabler = f"enabled in {by}"
            disable = f"remove {bus.name} from {by} and"
        else:
            enabler = f"used by {by}"
            disable = f"move {by[7:]} off it and"
        off = f" (remove {bus.enable})" if bus.enable else ""
        return (
            f"pin {pin!r} (GPIO{number}) on board {self.board.name!r} is {role} of the "
            f"{bus.label}, {enabler}. Fix: choose a pin no enabled bus takes ({self._free()}), "
            f"or, if nothing needs {bus.name}, {disable} disable it in config.txt{off}"
        )

    def _free(self) -> str:
        """Under the lock: the first few pins nothing holds, for messages."""
        taken = {*self._exclusive, *self._shared, *self.board.reserved}
        for bus, _ in self._enabled.values():
            taken.update(bus.pins.values(), bus.selects.values())
        free = [f"GPIO{n}" for n in self.board.gpio if n not in taken]
        if not free:
            return "none is free"
        return "free: " + ", ".join(free[:5]) + (", …" if len(free) > 5 else "")

    def _holders(self, number: int) -> set[str]:
        holders = set(self._shared.get(number, ()))
        if number in self._exclusive:
            holders.add(self._exclusive[number])
        return holders

    @property
    def claims(self) -> dict[int, set[str]]:
        """GPIO number → who uses it."""
        with self._lock:
            return {n: self._holders(n) for n in {*self._exclusive, *self._shared}}


def _make_factory(name: str | None) -> Any:
    try:
        from gpiozero import Device
    except ImportError:
        raise PluginError(
            "this sensor needs gpiozero, which is not installed. Fix: pip install 'lichen[gpio]'"
        ) from None
    if name is None:
        Device.ensure_pin_factory()
        return Device.pin_factory
    from importlib.metadata import entry_points

    for ep in entry_points(group="gpiozero_pin_factories"):
        if ep.name == name:
            factory = ep.load()()
            if Device.pin_factory is None:
                Device.pin_factory = factory  # devices made without pin_factory= use it too
            return factory
    raise PluginError(f"gpiozero has no pin factory {name!r} here ([gpio] pin_factory)")


def _pins(bus: Bus) -> str:
    return ", ".join(f"GPIO{n}" for n in bus.pins.values()) or "no pins"
