"""The probes of ``lichen doctor`` that do not depend on the board's
configuration: the clock, the disk, the radios and the service, and the
:class:`Check` every probe reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..board import BoardProfile
from ..config import Config
from ..service.systemd import UNIT_DIR
from ..service.unit import SERVICE_UNIT

__all__ = ["SANE_YEAR", "Check", "Status", "SystemChecks"]

Status = Literal["ok", "warn", "fail", "skip"]
#: a clock before this year has not been set (a Pi without RTC boots in the past)
SANE_YEAR = 2025


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, the verdict, what was seen and the fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class SystemChecks:
    """Probes over the system under ``root`` (files only; ``timedatectl`` and
    ``systemctl`` are asked only when the root is ``/``)."""

    config: Config | None
    board: BoardProfile

    def __init__(self, root: Path, home: Path, now: Callable[[], float] = time.time) -> None:
        self.root, self.home, self.now = root, home, now
        self.live = root.resolve() == Path("/")

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str) -> str | None:
        try:
            return self.path(absolute).read_text("utf-8", errors="replace")
        except OSError:
            return None

    def check_clock(self) -> Iterator[Check]:
        year = time.gmtime(self.now()).tm_year
        if year < SANE_YEAR:
            yield Check(
                "clock",
                "fail",
                f"the clock says {year}: it was never set",
                "connect to a network with NTP (timedatectl set-ntp true), or fit an RTC; "
                "entries keep their order regardless (hybrid logical clock)",
            )
        else:
            yield Check(
                "clock", "ok", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.now()))
            )
        synced = self._synchronised()
        if synced is None:
            yield Check(
                "clock sync",
                "warn",
                "cannot tell whether the clock is synchronised (no timesyncd flag; "
                "timedatectl absent or silent)",
            )
        elif synced:
            yield Check("clock sync", "ok", "synchronised (NTP)")
        else:
            yield Check(
                "clock sync",
                "warn",
                "not synchronised (NTP)",
                "timedatectl set-ntp true, and give the board a network now and then",
            )
        rtcs = sorted(p.name for p in self.path("/sys/class/rtc").glob("rtc*"))
        if rtcs:
            yield Check("rtc", "ok", f"real-time clock {', '.join(rtcs)}: time survives power-off")
        else:
            yield Check(
                "rtc",
                "warn",
                "no real-time clock: after a power cut the clock starts "
                "where it stopped until NTP sets it",
                "fit an RTC (Pi 5: a battery on the RTC connector) where the board runs offline",
            )

    def _synchronised(self) -> bool | None:
        if self.path("/run/systemd/timesync/synchronized").exists():
            return True
        if not self.live or shutil.which("timedatectl") is None:
            return None
        try:
            out = subprocess.run(
                ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        value = out.stdout.strip()
        return {"yes": True, "no": False}.get(value)

    def check_disk(self) -> Iterator[Check]:
        where = self.home if self.home.exists() else self.home.parent
        try:
            usage = shutil.disk_usage(where)
        except OSError as exc:
            yield Check("disk", "fail", f"cannot read the free space at {where}: {exc}")
            return
        floor = self.config.retention.min_free_bytes if self.config else 50_000_000
        free_mb = usage.free / 1e6
        detail = f"{free_mb:,.0f} MB free of {usage.total / 1e6:,.0f} MB at {where}"
        if usage.free < floor:
            yield Check(
                "disk",
                "fail",
                f"{detail}, below [retention] min_free",
                "free space, or set [retention] quota so old acknowledged entries go",
            )
        elif usage.free < 4 * floor:
            yield Check(
                "disk",
                "warn",
                f"{detail}: little room left",
                "free space, or set [retention] quota",
            )
        else:
            yield Check("disk", "ok", detail)
        if self.home.exists() and not os.access(self.home, os.W_OK):
            yield Check(
                "home",
                "fail",
                f"{self.home} is not writable by this user",
                "run as the user that owns it (or chown it)",
            )

    def check_radios(self) -> Iterator[Check]:
        blocked = self._rfkill()
        wanted = self.board.radios
        ble_used = self.config is not None and bool(
            self.config.plugins.get("transports", {}).get("ble")
        )
        adapters = sorted(p.name for p in self.path("/sys/class/bluetooth").glob("hci*"))
        if not (wanted.get("ble") or ble_used):
            yield Check("bluetooth", "skip", "no BLE on this board or in lichen.toml")
        elif not adapters:
            status: Status = "fail" if ble_used else "warn"
            yield Check(
                "bluetooth",
                status,
                "no Bluetooth adapter (/sys/class/bluetooth is empty)",
                "enable it (remove dtoverlay=disable-bt from config.txt), or plug in a dongle",
            )
        elif "bluetooth" in blocked:
            yield Check(
                "bluetooth",
                "fail" if ble_used else "warn",
                f"{', '.join(adapters)} present but blocked ({blocked['bluetooth']})",
                "rfkill unblock bluetooth",
            )
        else:
            yield Check("bluetooth", "ok", ", ".join(adapters))
        if not wanted.get("wifi"):
            return
        wireless = sorted(p.parent.name for p in self.path("/sys/class/net").glob("*/wireless"))
        if not wireless and not self.board.models:  # a machine of any kind: wired, likely
            yield Check("wifi", "skip", "no Wi-Fi interface")
        elif not wireless:
            yield Check(
                "wifi", "warn", "no Wi-Fi interface", "rfkill list, and dmesg | grep brcmfmac"
            )
        elif "wlan" in blocked:
            yield Check(
                "wifi",
                "warn",
                f"{', '.join(wireless)} blocked ({blocked['wlan']})",
                "rfkill unblock wifi (and set the country: raspi-config nonint do_wifi_country XX)",
            )
        else:
            yield Check("wifi", "ok", ", ".join(wireless))

    def _rfkill(self) -> dict[str, str]:
        """rfkill type → ``soft``/``hard`` for the blocked switches."""
        out: dict[str, str] = {}
        for switch in self.path("/sys/class/rfkill").glob("rfkill*"):
            kind = (_text(switch / "type") or "").strip()
            for how in ("hard", "soft"):
                if (_text(switch / how) or "0").strip() == "1":
                    out[kind] = f"{how} blocked"
        return out

    def check_service(self) -> Iterator[Check]:
        unit = next(
            (
                p
                for p in (
                    self.path(f"{UNIT_DIR}/{SERVICE_UNIT}"),
                    self.path(f"/lib/systemd/system/{SERVICE_UNIT}"),
                )
                if p.exists()
            ),
            None,
        )
        if unit is None:
            yield Check(
                "service", "skip", f"{SERVICE_UNIT} is not installed (lichen service install)"
            )
            return
        if not self.live or shutil.which("systemctl") is None:
            yield Check("service", "ok", f"installed ({unit.relative_to(self.root)})")
            return
        state = subprocess.run(
            ["systemctl", "is-active", SERVICE_UNIT],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        if state == "active":
            yield Check("service", "ok", f"{SERVICE_UNIT} is active")
        else:
            yield Check(
                "service",
                "fail",
                f"{SERVICE_UNIT} is {state or 'unknown'}",
                "journalctl -u lichen -p err shows why; systemctl restart lichen",
            )


def _text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return None
