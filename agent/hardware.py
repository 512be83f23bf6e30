"""Board-level resources that plugins share: the board's pins, gpiozero's pin
factory and the I²C buses.

One :class:`Hardware` per agent. It resolves pin names against the board
profile, keeps track of which sensor instance claimed which pin or bus (two
instances on one pin is a configuration error, found at start), and creates
the gpiozero pin factory and the I²C buses lazily — only a node that
configures a GPIO plugin imports gpiozero, only one with an I²C sensor
smbus2. Tests pass gpiozero's ``MockFactory`` and simulated I²C buses
(:class:`agent.testing.FakeI2CBus`) in directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .board import BoardProfile, resolve_pin
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

    def claim(self, owner: str, pins: Iterable[str | int]) -> list[int]:
        """Claim pins (``17``, ``"GPIO17"``, ``"CE0"``) for ``owner`` alone, and buses
        (``"bus:spi0"``) shared with other users of the bus. ValueError if a pin is
        unknown or reserved, or another owner holds it (alone, or as a bus pin
        that ``owner`` wants alone)."""
        exclusive: list[int] = []
        shared: list[int] = []
        for pin in pins:
            if isinstance(pin, str) and pin.startswith("bus:"):
                bus = pin[4:]
                if bus not in self.board.buses:
                    raise ValueError(
                        f"board {self.board.name!r} has no bus {bus!r} "
                        f"(it has: {', '.join(sorted(self.board.buses)) or 'none'})"
                    )
                shared.extend(self.board.buses[bus])
            else:
                exclusive.append(self.resolve(pin))
        with self._lock:
            for number in exclusive:
                others = self._holders(number) - {owner}
                if others:
                    raise ValueError(
                        f"GPIO{number} on board {self.board.name!r} is already used by "
                        f"{', '.join(repr(o) for o in sorted(others))}"
                    )
            for number in shared:
                alone = self._exclusive.get(number)
                if alone is not None and alone != owner:
                    raise ValueError(
                        f"GPIO{number} on board {self.board.name!r} belongs to a bus, but "
                        f"{alone!r} uses it as a plain pin"
                    )
            for number in exclusive:
                self._exclusive[number] = owner
            for number in shared:
                self._shared.setdefault(number, set()).add(owner)
        return exclusive + shared

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
