"""The board-health sensor: CPU temperature, load, memory, disk, uptime, throttling.

Which fields a node reports depends on what the machine has: a laptop has no
firmware throttle word, many VMs have no thermal zone. Sources are found once,
in :meth:`SystemSensor.open`; a source that is absent is left out of the
readings and of the ``_sensors`` description — it is not an error. A source
that fails later (a file that cannot be read) is skipped for that reading and
logged once, until it works again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.plugin_api import FieldSpec, Sensor, SensorConfig, SensorContext, Value, setting

from .readers import (
    THROTTLE_BITS,
    THROTTLED_SYSFS,
    decode_throttled,
    disk_usage,
    memory,
    parse_loadavg,
    parse_meminfo,
    parse_millidegrees,
    parse_throttled,
    parse_uptime,
    read_text,
    run_vcgencmd,
)

__all__ = ["SystemConfig", "SystemSensor"]

MIB = 1 << 20
Source = Callable[[], Mapping[str, Value]]

CPU_FIELDS = {"cpu_temperature": FieldSpec(unit="°C", resolution=0.1, device_class="temperature")}
LOAD_FIELDS = {name: FieldSpec(resolution=0.01) for name in ("load_1", "load_5", "load_15")}
MEMORY_FIELDS = {
    name: FieldSpec(unit="MiB", resolution=1, device_class="data_size")
    for name in ("memory_available", "memory_total")
}
DISK_FIELDS = {
    name: FieldSpec(unit="MiB", resolution=1, device_class="data_size")
    for name in ("disk_free", "disk_total")
}
UPTIME_FIELDS = {"uptime": FieldSpec(unit="s", resolution=1, device_class="duration")}
THROTTLE_FIELDS = {
    **{name: FieldSpec(device_class="problem") for name in THROTTLE_BITS},
    "throttle_bits": FieldSpec(resolution=1),
}


@dataclass(frozen=True, kw_only=True)
class SystemConfig(SensorConfig):
    interval: float = setting(30.0, min=0.01, help="seconds between readings, e.g. 30.0")
    disk_path: str | None = setting(
        None,
        help='the file system to report free space of, e.g. disk_path = "/data"; '
        "leave it out for the one holding the node's home",
    )
    thermal_zone: int = setting(
        0,
        min=0,
        help="the CPU's thermal zone: /sys/class/thermal/thermal_zone<N>/temp "
        "(0 on a Raspberry Pi)",
    )
    vcgencmd: str = setting(
        "vcgencmd",
        help="the command asked for the throttle flags when sysfs lacks "
        'get_throttled, e.g. "/usr/bin/vcgencmd"; "" never runs it',
    )
    proc_root: str = setting(
        "/proc", help='advanced: where procfs is mounted, e.g. "/proc" (tests use a copy)'
    )
    sys_root: str = setting(
        "/sys", help='advanced: where sysfs is mounted, e.g. "/sys" (tests use a copy)'
    )


class SystemSensor(Sensor):
    """Health of the board the agent runs on. No wiring.

    Fields (each only where the machine provides it):

    * ``cpu_temperature`` °C — gpiozero's ``CPUTemperature`` (thermal zone 0);
    * ``load_1``, ``load_5``, ``load_15`` — load averages from ``/proc/loadavg``;
    * ``memory_available``, ``memory_total`` MiB — ``/proc/meminfo``;
    * ``disk_free``, ``disk_total`` MiB — the node's home, or ``disk_path``;
    * ``uptime`` s — ``/proc/uptime``;
    * ``undervoltage``, ``frequency_capped``, ``throttled``, ``soft_temp_limit``
      (now) and the same with ``_since_boot``, plus the raw ``throttle_bits`` —
      on a Raspberry Pi, from the firmware (sysfs ``get_throttled``, else
      ``vcgencmd get_throttled``).

    Example configuration::

        [[sensors.system]]
        name = "health"
        interval = 30.0
    """

    Config = SystemConfig
    config: SystemConfig

    def __init__(self, config: SystemConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self._sources: dict[str, Source] = {}
        self._failing: set[str] = set()
        self._devices: list[Any] = []

    # ------------------------------------------------------------ sources

    def open(self) -> None:
        cfg = self.config
        proc, sysfs = Path(cfg.proc_root), Path(cfg.sys_root)
        fields: dict[str, FieldSpec] = {}
        candidates: list[tuple[str, Source | None, dict[str, FieldSpec]]] = [
            ("cpu temperature", self._cpu_source(sysfs), CPU_FIELDS),
            ("load", self._file_source(proc / "loadavg", _load), LOAD_FIELDS),
            ("memory", self._file_source(proc / "meminfo", _memory), MEMORY_FIELDS),
            ("disk", self._disk_source(), DISK_FIELDS),
            ("uptime", self._file_source(proc / "uptime", _uptime), UPTIME_FIELDS),
            ("throttle flags", self._throttle_source(sysfs), THROTTLE_FIELDS),
        ]
        for name, source, source_fields in candidates:
            if source is None:
                self.context.log.info("%s: not available on this machine; not reported", name)
                continue
            self._sources[name] = source
            fields.update(source_fields)
        self.fields = fields

    def _file_source(
        self, path: Path, parse: Callable[[str], Mapping[str, Value]]
    ) -> Source | None:
        if not path.exists():
            return None
        return lambda: parse(read_text(path))

    def _cpu_source(self, sysfs: Path) -> Source | None:
        path = sysfs / "class" / "thermal" / f"thermal_zone{self.config.thermal_zone}" / "temp"
        if not path.exists():
            return None
        board = self.context.board
        if board is not None and not board.gpio:  # no pins: do not make gpiozero probe for any
            return lambda: {"cpu_temperature": parse_millidegrees(read_text(path))}
        try:
            from gpiozero import CPUTemperature

            device = CPUTemperature(sensor_file=str(path), pin_factory=self.context.pin_factory)
        except Exception as exc:  # no gpiozero, or no pin factory on this board
            self.context.log.info("reading %s directly (gpiozero unavailable: %s)", path, exc)
            return lambda: {"cpu_temperature": parse_millidegrees(read_text(path))}
        self._devices.append(device)
        return lambda: {"cpu_temperature": float(device.temperature)}

    def _disk_source(self) -> Source:
        home = self.context.home or self.context.state_dir
        path = Path(self.config.disk_path) if self.config.disk_path else home

        def read() -> Mapping[str, Value]:
            if self.config.disk_path and not path.exists():
                raise FileNotFoundError(f"disk_path {str(path)!r} does not exist")
            free, total = disk_usage(path)
            return {"disk_free": free / MIB, "disk_total": total / MIB}

        return read

    def _throttle_source(self, sysfs: Path) -> Source | None:
        path = sysfs / THROTTLED_SYSFS
        if path.exists():
            return lambda: _throttle(parse_throttled(read_text(path)))
        command = shutil.which(self.config.vcgencmd) if self.config.vcgencmd else None
        if command is not None:
            return lambda: _throttle(parse_throttled(run_vcgencmd(command)))
        return None

    # ------------------------------------------------------------ sampling

    def sample(self) -> Mapping[str, Value] | None:
        values: dict[str, Value] = {}
        for name, source in self._sources.items():
            try:
                values.update(source())
            except (OSError, ValueError) as exc:
                if name not in self._failing:
                    self._failing.add(name)
                    self.context.log.warning(
                        "%s: cannot read (%s); left out until it can", name, exc
                    )
                continue
            if name in self._failing:
                self._failing.discard(name)
                self.context.log.info("%s: readable again", name)
        return values or None

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()


def _load(text: str) -> Mapping[str, Value]:
    one, five, fifteen = parse_loadavg(text)
    return {"load_1": one, "load_5": five, "load_15": fifteen}


def _memory(text: str) -> Mapping[str, Value]:
    available, total = memory(parse_meminfo(text))
    return {"memory_available": available / MIB, "memory_total": total / MIB}


def _uptime(text: str) -> Mapping[str, Value]:
    return {"uptime": parse_uptime(text)}


def _throttle(word: int) -> Mapping[str, Value]:
    return {**decode_throttled(word), "throttle_bits": word}
