"""What the I²C sensors share: the bus and address keys, and the bus claim."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from agent.errors import ConfigError
from agent.plugin_api import I2CBus, Sensor, SensorConfig, setting

__all__ = ["I2CSensor", "I2CSensorConfig"]


@dataclass(frozen=True, kw_only=True)
class I2CSensorConfig(SensorConfig):
    """Keys every I²C sensor has; each plugin gives ``address`` its chip's default."""

    interval: float = setting(10.0, min=0.1, help="seconds between readings, e.g. 10.0")
    bus: int = setting(
        1,
        min=0,
        max=99,
        help="the I²C bus: 1 is /dev/i2c-1, the header's SDA/SCL (pins 3 and 5) on a Pi",
    )
    address: int = setting(
        0x76, help="the chip's 7-bit address, e.g. 0x76 (i2cdetect -y 1 lists them)"
    )

    #: the addresses its chip can be strapped to
    ADDRESSES: ClassVar[tuple[int, ...]] = tuple(range(0x03, 0x78))

    def __post_init__(self) -> None:
        if self.address not in self.ADDRESSES:
            options = " or ".join(f"0x{a:02X}" for a in self.ADDRESSES)
            raise ConfigError(
                "is not an address this chip answers on",
                key="address",
                value=f"0x{self.address:02X}",
                fix=f"address = {options}" if len(self.ADDRESSES) < 5 else "a 7-bit address",
            )


class I2CSensor(Sensor):
    """A sensor on one chip of one I²C bus: ``self.bus``, ``self.address``."""

    config: I2CSensorConfig
    bus: I2CBus

    @classmethod
    def claims(cls, config: SensorConfig) -> list[str | int]:
        if not isinstance(config, I2CSensorConfig):
            raise TypeError(f"{cls.__name__}.claims needs its own Config, not {config!r}")
        return [f"bus:i2c{config.bus}"]

    @classmethod
    def requires(cls, config: SensorConfig) -> Mapping[str, str]:
        return {"smbus2": "lichen[i2c]"}

    @property
    def address(self) -> int:
        return self.config.address

    def open(self) -> None:
        self.bus = self.context.i2c(self.config.bus)
