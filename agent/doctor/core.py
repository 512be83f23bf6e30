"""The configuration-dependent probes of ``lichen doctor``: the configuration,
the board profile against the hardware, the extras the plugins import, the
pin factory and the buses (``config.txt`` and the device nodes)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..board import Bus, detect_board, load_board
from ..config import Config
from ..errors import ConfigError, LichenError
from .system import Check, SystemChecks

__all__ = ["Doctor", "config_txt_lines"]

#: pin factory → the module it needs, and how to install it
FACTORIES = {
    "lgpio": ("lgpio", "pip install lgpio (Raspberry Pi OS: sudo apt install python3-lgpio)"),
    "rpigpio": ("RPi.GPIO", "pip install RPi.GPIO"),
    "pigpio": ("pigpio", "pip install pigpio, and run the pigpiod daemon"),
    "native": (None, ""),
    "mock": (None, ""),
}
#: the pin factories that cannot drive a Pi 5's RP1
NOT_ON_RP1 = frozenset({"rpigpio", "pigpio"})


def config_txt_lines(text: str) -> set[str]:
    """The settings of a ``config.txt``: one per line and per ``dtparam`` value
    (``dtparam=i2c_arm=on,spi=on`` gives both), comments and blanks dropped.
    Conditional sections (``[pi4]``) are not told apart."""
    out: set[str] = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip().replace(" ", "")
        if not line or line.startswith("["):
            continue
        key, _, value = line.partition("=")
        if key == "dtparam":
            out.update(f"dtparam={part}" for part in value.split(","))
        else:
            out.add(line)
    return out


def _enabled_in(bus: Bus, lines: set[str]) -> bool:
    """Whether ``config.txt`` lines enable ``bus`` (an overlay with or without
    parameters; a ``dtparam`` set ``on`` or bare)."""
    enable = bus.enable
    if enable.startswith("dtoverlay="):
        name, _, params = enable.partition(",")
        for line in lines:
            if line == name or line.startswith(name + ","):
                wanted = set(params.split(",")) - {""}
                return wanted <= set(line.split(",")[1:])
        return False
    if enable.startswith("dtparam=") and enable.endswith("=on"):
        return enable in lines or enable.removesuffix("=on") in lines
    return enable in lines


class Doctor(SystemChecks):
    """The checks for one node (``config`` None: no usable configuration, the
    board's own checks still run) on the system under ``root``."""

    def __init__(
        self,
        *,
        root: Path,
        home: Path,
        config: Config | None,
        config_error: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(root, home, now)
        self.config = config
        self.config_error = config_error
        self._configured: tuple[list[tuple[str, str, Any, Any]], dict[str, tuple[Bus, str]]] | None
        self._configured = None
        try:
            self.board = load_board(config.node.board if config else "generic")
        except ConfigError as exc:  # an unknown board: said once, by the config check
            self.config, self.config_error = None, str(exc)
            self.board = load_board("generic")

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for probe in (
            self.check_config,
            self.check_board,
            self.check_extras,
            self.check_pin_factory,
            self.check_buses,
            self.check_clock,
            self.check_disk,
            self.check_radios,
            self.check_service,
        ):
            checks.extend(probe())
        return checks

    # ------------------------------------------------------------ the checks

    def check_config(self) -> Iterator[Check]:
        if self.config is not None:
            try:
                self._setup()
            except LichenError as exc:
                self.config, self.config_error = None, str(exc)
        if self.config is None:
            yield Check(
                "config",
                "fail",
                self.config_error or "no configuration",
                "fix lichen.toml as the message says (or lichen init)",
            )
        else:
            yield Check("config", "ok", f"{self.config.path} is valid")

    def check_board(self) -> Iterator[Check]:
        raw = self.read("/proc/device-tree/model")
        configured = self.board.name
        if raw is None:
            if self.board.models:
                yield Check(
                    "board",
                    "warn",
                    f"profile {configured!r}, but this machine has "
                    "no /proc/device-tree/model to confirm it",
                )
            else:
                yield Check("board", "ok", f"profile {configured!r} (no device-tree model)")
            return
        model = raw.strip("\x00 \n")
        detected = detect_board(model)
        if detected == configured or (detected is None and not self.board.models):
            yield Check("board", "ok", f"{model}: profile {configured!r}")
        elif detected is None:
            yield Check(
                "board",
                "warn",
                f"{model} has no profile; {configured!r} is configured",
                'board = "generic" in [node] if the header differs',
            )
        else:
            yield Check(
                "board",
                "fail",
                f"this is a {model} (profile {detected!r}), but {configured!r} is configured",
                f'board = "{detected}" in [node] of lichen.toml',
            )

    def _setup(self) -> tuple[list[tuple[str, str, Any, Any]], dict[str, tuple[Bus, str]]]:
        """``(group, label, class, config)`` of every configured instance, and the
        buses enabled (``[gpio] buses`` and the sensors'), as the agent would
        configure them; a configuration that does not configure raises."""
        from ..plugins import configure_plugin
        from ..runtime.configure import configure_sensors, hardware_for

        if self._configured is not None:
            return self._configured
        if self.config is None:
            return [], {}
        hardware = hardware_for(self.config)  # claims only: no pin is driven
        plugins: list[tuple[str, str, Any, Any]] = [
            ("sensors", sensor.label, sensor.cls, sensor.config)
            for sensor in configure_sensors(self.config, hardware)
        ]
        for group in ("transports", "uplinks"):
            for plugin, index, table in self.config.instances(group):
                link = configure_plugin(group, plugin, index, table, self.config.path)
                plugins.append((group, link.label, link.cls, link.config))
        self._configured = plugins, hardware.enabled_buses
        return self._configured

    def check_extras(self) -> Iterator[Check]:
        if self.config is None:
            return
        missing: dict[str, tuple[str, list[str]]] = {}
        for _, label, cls, config in self._setup()[0]:
            for module, requirement in cls.requires(config).items():
                if not _importable(module):
                    missing.setdefault(module, (requirement, []))[1].append(label)
        if not missing:
            yield Check("extras", "ok", "every module the configured plugins use is installed")
        for module, (requirement, users) in sorted(missing.items()):
            yield Check(
                f"extras: {module}",
                "fail",
                f"{module} is not installed; {', '.join(users)} need it",
                f"pip install '{requirement}'",
            )

    def check_pin_factory(self) -> Iterator[Check]:
        if not self.board.gpio:
            yield Check("pin factory", "skip", f"board {self.board.name!r} has no GPIO")
            return
        chosen = self.config.gpio.pin_factory if self.config else None
        name = chosen or self.board.pin_factory or "lgpio"
        module, fix = FACTORIES[name]
        if self.board.name == "rpi-5" and name in NOT_ON_RP1:
            yield Check(
                "pin factory",
                "fail",
                f"{name!r} cannot drive the Raspberry Pi 5's GPIO",
                'pin_factory = "lgpio" in [gpio]',
            )
        elif module is None or _importable(module):
            how = "configured" if chosen else "the default"
            yield Check("pin factory", "ok", f"{name} ({how})")
        elif self._uses_gpio():
            yield Check("pin factory", "fail", f"{name}: {module} is not installed", fix)
        else:
            yield Check(
                "pin factory",
                "warn",
                f"{name}: {module} is not installed (no GPIO sensor is configured yet)",
                fix,
            )

    def _uses_gpio(self) -> bool:
        return any("gpiozero" in cls.requires(c) for _, _, cls, c in self._setup()[0])

    def check_buses(self) -> Iterator[Check]:
        used = self._setup()[1]
        text = self.read("/boot/firmware/config.txt")
        where = "/boot/firmware/config.txt"
        if text is None:
            text, where = self.read("/boot/config.txt"), "/boot/config.txt"
        lines = config_txt_lines(text) if text is not None else None
        for _name, (bus, by) in sorted(used.items()):
            yield self._bus_check(bus, by, lines, where)
        if lines is None or not self.board.buses:
            return
        declared = set(used)
        for name, bus in sorted(self.board.buses.items()):
            if name not in declared and bus.enable and _enabled_in(bus, lines):
                yield Check(
                    f"bus {name}",
                    "warn",
                    f"{where} enables the {bus.label} ({bus.enable}), but lichen.toml "
                    "does not list it: a sensor could be given its pins",
                    f'add "{name}" to [gpio] buses',
                )

    def _bus_check(self, bus: Bus, by: str, lines: set[str] | None, where: str) -> Check:
        label = f"bus {bus.name}"
        device = bus.device
        present = bool(device) and self.path(device).exists()
        if bus.kind == "w1":
            masters = self.path("/sys/bus/w1/devices")
            present = masters.is_dir() and any(masters.glob("w1_bus_master*"))
        if present:
            return Check(label, "ok", f"{bus.label} ({by}): {device or 'enabled'}")
        if lines is not None and bus.enable and _enabled_in(bus, lines):
            if not device:  # no device named (numbered in the order enabled): config.txt says
                return Check(label, "ok", f"{bus.label} ({by}): {bus.enable} in {where}")
            return Check(
                label,
                "fail",
                f"{where} enables the {bus.label} ({by}), but {device} is missing",
                "reboot, so the firmware applies config.txt",
            )
        if bus.kind == "i2c" and not bus.pins:  # a generic board: the kernel's module
            return Check(
                label,
                "fail",
                f"{device} is missing ({by})",
                "sudo modprobe i2c-dev, and add i2c-dev to /etc/modules; "
                "i2cdetect -l lists the buses",
            )
        fix = f"add {bus.enable} to {where} and reboot"
        if bus.kind == "i2c" and bus.name == "i2c1":
            fix += " (or: sudo raspi-config nonint do_i2c 0)"
        seen = f"{device} is missing" if device else "it is not enabled"
        return Check(label, "fail", f"the {bus.label} is needed ({by}), but {seen}", fix)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # absent, or present but broken: either way not usable
        return False
    return True
