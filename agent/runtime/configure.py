"""What a configuration asks of the machine: the board's hardware and the sensor
instances, checked before anything runs (``lichen run``, ``lichen firstboot``,
``lichen doctor`` and :class:`agent.testing.AgentHarness` all start here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..board import load_board
from ..config import Config
from ..errors import ConfigError
from ..hardware import Hardware
from ..plugins import ConfiguredSensor, configure_sensor
from ..schema import distinct_labels

if TYPE_CHECKING:
    from ..i2c import I2CBus

__all__ = ["configure_sensors", "hardware_for"]


def hardware_for(
    config: Config,
    *,
    board: str | None = None,
    pin_factory: Any = None,
    i2c: Mapping[int, I2CBus] | None = None,
) -> Hardware:
    """The board hardware named by ``[node] board`` (or ``board``) and ``[gpio]``,
    its ``buses`` enabled; tests give a ``pin_factory`` and simulated ``i2c`` buses."""
    try:
        return Hardware(
            load_board(board or config.node.board),
            pin_factory=pin_factory,
            pin_factory_name=config.gpio.pin_factory,
            i2c=i2c,
            buses=config.gpio.buses,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), file=config.path, key="[gpio] buses") from None


def configure_sensors(config: Config, hardware: Hardware | None = None) -> list[ConfiguredSensor]:
    """Load and check every ``[[sensors.NAME]]`` instance (names and pins must not
    clash); with ``hardware``, their pins are claimed on the board."""
    sensors = [
        configure_sensor(plugin, index, table, config.path, hardware)
        for plugin, index, table in config.instances("sensors")
    ]
    seen: dict[str, ConfiguredSensor] = {}
    for s in sensors:
        first = seen.get(s.collection)
        if first is not None:
            earlier, this = distinct_labels(
                "sensors", (first.plugin, first.index, first.name), (s.plugin, s.index, s.name)
            )
            key = "name" if s.config.collection is None else "collection"
            raise ConfigError(
                f"writes collection {s.collection!r}, as {earlier} does",
                file=config.path,
                key=f"{this} {key}",
                value=getattr(s.config, key),
                fix="give each [[sensors.*]] table its own name (or collection)",
            )
        seen[s.collection] = s
    return sensors
