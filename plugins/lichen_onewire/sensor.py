"""DS18B20 (and kin) temperature probes on the Linux 1-Wire bus.

Every ``interval`` the sensor reads each probe — the configured ones, or every
probe of the configured families found on the bus — and writes one reading
with a field per probe (named by its id, or by an alias). A read that fails
(CRC mismatch, empty file, blank scratchpad) or shows the 85 °C power-on value
is tried again, up to ``retries`` times. What still fails is left out of the
reading (a CRC failure may instead be kept, flagged, with ``on_crc_error =
"flag"``); a persistent 85 °C is kept and flagged ``power-on reset``. Flagged
values go in readings of their own, so a flag never covers a good probe.

Probes come and go — a loose connector, a probe unplugged for cleaning — so a
missing probe is logged once when it disappears and once when it is back,
never raised: the other probes keep reporting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import ConfigError, PluginError
from agent.plugin_api import FieldSpec, Sensor, SensorConfig, SensorContext, Value, setting

from .w1 import FAMILIES, PROBE_ID, Attribute, W1Bus, W1FormatError, resolution_step

__all__ = ["OneWireConfig", "OneWireSensor"]

POWER_ON_RESET_FLAG = "power-on reset"
CRC_FLAG = "crc error"


def _check_ids(ids: list[str]) -> None:
    for probe in ids:
        if not PROBE_ID.match(probe):
            raise ValueError(f"{probe!r} is not a probe id like 28-0316a2795aff (lower-case hex)")


def _check_families(families: list[str]) -> None:
    for family in families:
        if family not in FAMILIES:
            known = ", ".join(f'"{k}" ({v})' for k, v in FAMILIES.items())
            raise ValueError(f"{family!r} is not a 1-Wire thermometer family ({known})")


@dataclass(frozen=True, kw_only=True)
class OneWireConfig(SensorConfig):
    interval: float = setting(
        10.0, min=0.01, help="seconds between readings (each probe takes ~0.75 s)"
    )
    probes: list[str] = setting(
        default_factory=list,
        check=_check_ids,
        help='the probes to read, e.g. probes = ["28-0316a2795aff"]; '
        "leave it out to read every probe found",
    )
    names: dict[str, str] = setting(
        default_factory=dict,
        help='a field name per probe id, e.g. names = { "28-0316a2795aff" = "soil" }; '
        "default: the id",
    )
    families: list[str] = setting(
        default_factory=lambda: ["28"],
        check=_check_families,
        help='family codes found probes must have: "28" DS18B20, "10" DS18S20, '
        '"22" DS1822, "3b" DS1825/MAX31850, "42" DS28EA00',
    )
    retries: int = setting(2, min=0, max=10, help="reads tried again after a failed one, e.g. 2")
    retry_delay: float = setting(0.1, min=0.0, max=10.0, help="seconds between tries, e.g. 0.1")
    on_crc_error: Literal["skip", "flag"] = setting(
        "skip",
        help='when every try fails the CRC: "skip" the probe, or "flag" (keep the '
        'value with quality "crc error")',
    )
    resolution_bits: int | None = setting(
        None,
        min=9,
        max=12,
        help="set each probe's resolution: 9 (0.5 °C, 94 ms) … 12 (0.0625 °C, 750 ms); "
        "needs write access to sysfs",
    )
    attribute: Attribute = setting(
        "w1_slave",
        help='"w1_slave" (CRC verdict and scratchpad, every kernel) or "temperature" '
        "(Linux ≥ 5.10, plain millidegrees); the other is used where one is missing",
    )
    pin: str | int | None = setting(
        None,
        help="the data pin of the w1-gpio overlay, claimed so no other sensor takes it, "
        'e.g. pin = "W1" (GPIO4)',
    )
    root: str = setting(
        "/sys/bus/w1/devices",
        help='advanced: the 1-Wire devices directory, e.g. "/sys/bus/w1/devices"',
    )

    def __post_init__(self) -> None:
        where = "names"
        for probe, alias in self.names.items():
            if not PROBE_ID.match(probe):
                raise ConfigError(
                    f"{probe!r} is not a probe id", key=where, fix='e.g. "28-0316a2795aff"'
                )
            if self.probes and probe not in self.probes:
                raise ConfigError(
                    f"{probe!r} is not in probes", key=where, fix="add it to probes, or drop it"
                )
            if not 1 <= len(alias) <= 64:
                raise ConfigError(f"{alias!r} is not a field name", key=where, fix="1–64 chars")
        if len(set(self.names.values())) != len(self.names):
            raise ConfigError("two probes have one name", key=where, fix="give each its own")


class OneWireSensor(Sensor):
    """DS18B20 temperature probes through the Linux 1-Wire sysfs tree.

    Wiring (any number of probes in parallel; enable the bus with
    ``dtoverlay=w1-gpio`` in ``/boot/firmware/config.txt`` — GPIO4 by default,
    ``dtoverlay=w1-gpio,gpiopin=17`` for another pin — and reboot)::

        probe VDD (red)    ──── 3V3   (header pin 1)
        probe DQ (yellow)  ──── GPIO4 (header pin 7) ──4.7 kΩ── 3V3
        probe GND (black)  ──── GND   (header pin 9)

    Example configuration::

        [[sensors.onewire]]
        name = "greenhouse"
        interval = 30.0
        pin = "W1"
        names = { "28-0316a2795aff" = "soil", "28-0416b1c3e2ff" = "air" }

    Readings: one field per probe, °C; see the module docstring for failed
    reads, the 85 °C power-on value and probes that disappear.
    """

    Config = OneWireConfig
    config: OneWireConfig

    def __init__(self, config: OneWireConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self.bus = W1Bus(Path(config.root))
        self._known: dict[str, FieldSpec] = {}
        self._missing: set[str] = set()
        self._failing: set[str] = set()

    @classmethod
    def claims(cls, config: SensorConfig) -> list[str | int]:
        if not isinstance(config, OneWireConfig):
            raise TypeError(f"{cls.__name__}.claims needs its own Config, not {config!r}")
        # the w1-gpio overlay's bus, on this pin: no other sensor may take it
        return [f"bus:w1={config.pin}"] if config.pin is not None else []

    def field_name(self, probe: str) -> str:
        return self.config.names.get(probe, probe)

    def open(self) -> None:
        if not self.bus.exists():
            raise PluginError(
                f"no 1-Wire bus at {self.config.root}. Fix: add dtoverlay=w1-gpio to "
                "/boot/firmware/config.txt and reboot (or set root)"
            )
        found = self.config.probes or self.bus.discover(self.config.families)
        if not found:
            self.context.log.warning("no 1-Wire probes found in %s yet", self.config.root)
        self._learn([p for p in found if self.bus.present(p)])

    def _learn(self, probes: list[str]) -> None:
        """Describe (and set the resolution of) probes seen for the first time."""
        new = [p for p in probes if p not in self._known]
        if not new:
            return
        bits = self.config.resolution_bits
        for probe in new:
            if bits is not None:
                try:
                    self.bus.set_resolution(probe, bits)
                except OSError as exc:
                    self.context.log.warning("probe %s: cannot set %d bits: %s", probe, bits, exc)
            step = resolution_step(bits or self.bus.resolution(probe))
            self._known[probe] = FieldSpec(unit="°C", resolution=step, device_class="temperature")
            self.context.log.info("probe %s reports as %r", probe, self.field_name(probe))
        self.fields = {self.field_name(p): spec for p, spec in self._known.items()}

    def sample(self) -> Mapping[str, Value] | None:
        ts_ms = self.context.now_ms()
        probes = self.config.probes or self.bus.discover(self.config.families)
        good: dict[str, Value] = {}
        flagged: list[tuple[str, float, str]] = []
        for probe in probes:
            if self.context.stopping.is_set():
                return None
            result = self._read(probe)
            if result is None:
                continue
            self._learn([probe])
            celsius, flag = result
            if flag is None:
                good[self.field_name(probe)] = celsius
            else:
                flagged.append((self.field_name(probe), celsius, flag))
        if good:
            self.context.emit(good, ts_ms=ts_ms)
        for name, celsius, flag in flagged:
            self.context.emit({name: celsius}, quality=flag, ts_ms=ts_ms)
        return None  # emitted above, with the time the round of reads began

    def _read(self, probe: str) -> tuple[float, str | None] | None:
        """The probe's temperature and quality flag, or None (missing, or failed)."""
        cfg = self.config
        problem, crc_value, resets = "", None, 0
        for attempt in range(cfg.retries + 1):
            if attempt and not self.context.sleep(cfg.retry_delay):
                return None
            try:
                sample = self.bus.read(probe, cfg.attribute)
            except FileNotFoundError:
                self._gone(probe)
                return None
            except (OSError, W1FormatError) as exc:
                problem = str(exc)
                continue
            self._back(probe)
            if not sample.crc_ok:
                problem, crc_value = "CRC mismatch", sample.millidegrees / 1000
            elif sample.blank:
                problem = "blank scratchpad (nothing answered: check DQ and the pull-up)"
            elif sample.power_on_reset:
                problem, resets = "85 °C power-on value (probe reset: check its supply)", resets + 1
            else:
                self._recovered(probe)
                return sample.millidegrees / 1000, None
        tries = cfg.retries + 1
        if resets == tries:
            self._failed(probe, f"{problem}; kept, flagged")
            return 85.0, POWER_ON_RESET_FLAG
        if crc_value is not None and problem == "CRC mismatch" and cfg.on_crc_error == "flag":
            self._failed(probe, f"{problem} in {tries} tries; kept, flagged")
            return crc_value, CRC_FLAG
        self._failed(probe, f"{problem} in {tries} tries; left out")
        return None

    def _gone(self, probe: str) -> None:
        if probe not in self._missing:
            self._missing.add(probe)
            self.context.log.warning("probe %s is not on the bus (unplugged?)", probe)

    def _back(self, probe: str) -> None:
        if probe in self._missing:
            self._missing.discard(probe)
            self.context.log.info("probe %s is back", probe)

    def _failed(self, probe: str, problem: str) -> None:
        if probe not in self._failing:
            self._failing.add(probe)
            self.context.log.warning("probe %s: %s", probe, problem)

    def _recovered(self, probe: str) -> None:
        if probe in self._failing:
            self._failing.discard(probe)
            self.context.log.info("probe %s reads again", probe)
