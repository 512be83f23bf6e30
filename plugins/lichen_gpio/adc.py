"""MCP3xxx analog-to-digital converters on SPI: channel values every ``interval``.

One instance is one chip: it reads any of the chip's channels (gpiozero's
``MCP3001`` … ``MCP3304`` classes, one per channel, sharing the SPI interface)
and reports each as a field, optionally calibrated (``value * scale +
offset``) into a unit — soil moisture in %, a battery's voltage, a
potentiometer's angle.

On hardware SPI the instance shares the bus (``bus:spi0``: SCLK, MOSI, MISO)
and claims its own chip-select pin (``CE0`` or ``CE1``), so two chips can sit
on one bus, one per chip select.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.errors import ConfigError
from agent.plugin_api import FieldSpec, SensorConfig, SensorContext, Value, setting

from ._base import GpioSensor, require_gpiozero

__all__ = ["CHIPS", "AnalogConfig", "AnalogSensor"]

Chip = Literal[
    "MCP3001",
    "MCP3002",
    "MCP3004",
    "MCP3008",
    "MCP3201",
    "MCP3202",
    "MCP3204",
    "MCP3208",
    "MCP3301",
    "MCP3302",
    "MCP3304",
]

#: chip → (channels, bits, single channel that is always differential)
CHIPS: dict[str, tuple[int, int, bool]] = {
    "MCP3001": (1, 10, True),
    "MCP3002": (2, 10, False),
    "MCP3004": (4, 10, False),
    "MCP3008": (8, 10, False),
    "MCP3201": (1, 12, True),
    "MCP3202": (2, 12, False),
    "MCP3204": (4, 12, False),
    "MCP3208": (8, 12, False),
    "MCP3301": (1, 12, True),
    "MCP3302": (4, 12, False),
    "MCP3304": (8, 12, False),
}
SOFTWARE_PINS = ("clock_pin", "mosi_pin", "miso_pin", "select_pin")


def _pin_field(role: str, example: str) -> Any:
    return setting(None, help=f"software SPI: the GPIO wired to the chip's {role}, e.g. {example}")


@dataclass(frozen=True, kw_only=True)
class AnalogConfig(SensorConfig):
    chip: Chip = setting(
        "MCP3008",
        help='the ADC: "MCP3001", "MCP3002", "MCP3004", "MCP3008", "MCP3201", '
        '"MCP3202", "MCP3204", "MCP3208", "MCP3301", "MCP3302" or "MCP3304"',
    )
    channels: list[int] = setting(
        default_factory=lambda: [0], help="the channels to read, e.g. channels = [0, 1]"
    )
    differential: bool = setting(
        False,
        help="read each channel against its pair (0: CH0−CH1, 1: CH1−CH0, 2: "
        "CH2−CH3 …); the MCP3x01 chips are always differential (IN+ − IN−)",
    )
    names: list[str] = setting(
        default_factory=list,
        help='a field name per channel, e.g. names = ["moisture", "battery"]; default "ch<N>"',
    )
    source: Literal["value", "voltage", "raw"] = setting(
        "value",
        help='what is calibrated: "value" (0 to 1 of vref), "voltage" (volts) or '
        '"raw" (the chip\'s integer counts)',
    )
    scale: list[float] = setting(
        default_factory=lambda: [1.0],
        help="multiplier per channel (or one for all): field = source * scale + "
        "offset, e.g. scale = [-200.0]",
    )
    offset: list[float] = setting(
        default_factory=lambda: [0.0],
        help="added after scale, per channel or one for all, e.g. offset = [160.0]",
    )
    units: list[str] = setting(
        default_factory=list,
        help='a unit per channel (or one for all), e.g. units = ["%", "V"]; '
        'default "V" for source = "voltage", else none',
    )
    device_classes: list[str] = setting(
        default_factory=list,
        help="a dashboard hint per channel (or one for all), e.g. "
        'device_classes = ["moisture", "voltage"]',
    )
    vref: float = setting(3.3, min=0.001, help="volts on the chip's VREF pin, e.g. vref = 3.3")
    oversample: int = setting(
        1, min=1, max=1000, help="conversions averaged into each reading, e.g. 4"
    )
    port: int = setting(0, min=0, max=6, help="hardware SPI: the bus number (0 is /dev/spidev0.*)")
    device: int = setting(0, min=0, max=3, help="hardware SPI: the chip select, 0 (CE0) or 1 (CE1)")
    clock_pin: str | int | None = _pin_field("CLK", 'clock_pin = "GPIO21"')
    mosi_pin: str | int | None = _pin_field("DIN", 'mosi_pin = "GPIO20"')
    miso_pin: str | int | None = _pin_field("DOUT", 'miso_pin = "GPIO19"')
    select_pin: str | int | None = _pin_field("CS/SHDN", 'select_pin = "GPIO16"')

    def __post_init__(self) -> None:
        count = CHIPS[self.chip][0]
        if not self.channels or any(not 0 <= c < count for c in self.channels):
            every = ", ".join(str(c) for c in range(count))
            raise self._error(
                "channels", f"the {self.chip} has channels 0 to {count - 1}", f"[{every}] or fewer"
            )
        if len(set(self.channels)) != len(self.channels):
            raise self._error("channels", "a channel is listed twice", "list each channel once")
        n = len(self.channels)
        for key in ("names", "scale", "offset", "units", "device_classes"):
            got = len(getattr(self, key))
            if got not in ({0, n} if key == "names" else {0, 1, n}):
                fix = "give one per channel" + ("" if key == "names" else ", or one for all")
                raise self._error(key, f"has {got} entries for {n} channels", fix)
        if len(set(self.names)) != len(self.names):
            raise self._error("names", "a name is used twice", "give each channel its own name")
        if any(s == 0 for s in self.scale):
            raise self._error("scale", "a scale of 0 makes every reading the offset", "not 0")
        given = [getattr(self, k) is not None for k in SOFTWARE_PINS]
        if any(given) and not all(given):
            raise self._error(
                "clock_pin",
                "software SPI needs all four pins",
                "set clock_pin, mosi_pin, miso_pin and select_pin, or none of them",
            )

    def _error(self, key: str, problem: str, fix: str) -> Exception:
        return ConfigError(problem, key=key, fix=fix)  # the core names the table

    @property
    def software_spi(self) -> bool:
        return self.clock_pin is not None

    def per_channel(self, key: str, default: Any) -> list[Any]:
        """``key``'s list stretched to one entry per channel."""
        values: list[Any] = list(getattr(self, key))
        if not values:
            return [default] * len(self.channels)
        return values * len(self.channels) if len(values) == 1 else values


class AnalogSensor(GpioSensor):
    """Channels of an MCP3xxx ADC on SPI (gpiozero's ``MCP3008`` and kin).

    Wiring (MCP3008 on hardware SPI, chip select CE0; enable SPI with
    ``dtparam=spi=on``)::

        VDD, VREF ──── 3V3  (header pin 1)
        AGND, DGND ─── GND  (header pin 6)
        CLK  ──── SCLK/GPIO11 (header pin 23)
        DOUT ──── MISO/GPIO9  (header pin 21)
        DIN  ──── MOSI/GPIO10 (header pin 19)
        CS   ──── CE0/GPIO8   (header pin 24)
        CH0  ──── soil moisture probe's analog output
        CH1  ──── battery + through a 1:1 divider

    Example configuration (a capacitive probe reads 0.80 of vref in dry air and
    0.30 in water, so moisture % = value * -200 + 160; the battery's divider
    halves it, so volts = value * 3.3 * 2)::

        [[sensors.gpio_adc]]
        name = "bed-3"
        chip = "MCP3008"
        channels = [0, 1]
        names = ["moisture", "battery"]
        scale = [-200.0, 6.6]
        offset = [160.0, 0.0]
        units = ["%", "V"]
        device_classes = ["moisture", "voltage"]
        interval = 60.0

    Readings: one field per channel, ``source * scale + offset``, stored at
    the precision the chip resolves (one step of the converter, scaled).
    """

    Config = AnalogConfig
    config: AnalogConfig

    def __init__(self, config: AnalogConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        _, bits, _ = CHIPS[config.chip]
        step = {"value": 1.0 / 2**bits, "voltage": config.vref / 2**bits, "raw": 1.0}
        self.names: list[str] = config.names or [f"ch{c}" for c in config.channels]
        self.scales: list[float] = config.per_channel("scale", 1.0)
        self.offsets: list[float] = config.per_channel("offset", 0.0)
        units = config.per_channel("units", "V" if config.source == "voltage" else None)
        classes = config.per_channel("device_classes", None)
        self.fields = {
            name: FieldSpec(
                unit=unit,
                resolution=_resolution(step[config.source] * abs(scale)),
                device_class=device_class,
            )
            for name, scale, unit, device_class in zip(
                self.names, self.scales, units, classes, strict=True
            )
        }
        self.devices: list[Any] = []

    @classmethod
    def claims(cls, config: SensorConfig) -> list[str | int]:
        if not isinstance(config, AnalogConfig):
            raise TypeError(f"{cls.__name__}.claims needs its own Config, not {config!r}")
        if config.software_spi:
            return [getattr(config, key) for key in SOFTWARE_PINS]
        return [f"bus:spi{config.port}", f"CE{config.device}"]

    def open(self) -> None:
        gpiozero = require_gpiozero()
        cfg = self.config
        _, _, single = CHIPS[cfg.chip]
        if cfg.software_spi:
            spi: dict[str, Any] = {k: self.context.pin(getattr(cfg, k)) for k in SOFTWARE_PINS}
        else:
            spi = {"port": cfg.port, "device": cfg.device}
        chip = getattr(gpiozero, cfg.chip)
        for channel in cfg.channels:
            per_channel = {} if single else {"channel": channel, "differential": cfg.differential}
            self.devices.append(
                chip(
                    max_voltage=cfg.vref,
                    pin_factory=self.context.pin_factory,
                    **per_channel,
                    **spi,
                )
            )

    def _read(self, device: Any) -> float:
        source = self.config.source
        if source == "raw":
            return float(device.raw_value)
        return float(device.voltage if source == "voltage" else device.value)

    def sample(self) -> Mapping[str, Value]:
        n = self.config.oversample
        values: dict[str, Value] = {}
        for name, device, scale, offset in zip(
            self.names, self.devices, self.scales, self.offsets, strict=True
        ):
            reading = sum(self._read(device) for _ in range(n)) / n
            values[name] = reading * scale + offset
        return values

    def close(self) -> None:
        for device in self.devices:
            device.close()
        self.devices.clear()


def _resolution(step: float) -> float:
    """The power of ten just below one step of the converter (``0.000977`` → ``0.0001``)."""
    exponent = max(-12, min(12, math.floor(math.log10(step))))
    return float(f"1e{exponent}")
