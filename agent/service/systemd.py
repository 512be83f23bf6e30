"""Talking to systemd: is it here, writing our unit files, ``systemctl``.

Everything :mod:`agent.cli.service` does to the system goes through
:class:`Systemd`, which refuses clearly where systemd does not run (a
container, a chroot, another init) instead of writing files nobody reads.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import LichenError
from ..fsutil import atomic_write
from .unit import MARKER

__all__ = ["Systemd", "SystemdMissing", "UnitWrite"]

UNIT_DIR = Path("/etc/systemd/system")
RUNTIME_DIR = Path("/run/systemd/system")  # exists only when systemd is the running init


class SystemdMissing(LichenError):
    """systemd is not the running service manager here."""


@dataclass(frozen=True)
class UnitWrite:
    path: Path
    changed: bool


class Systemd:
    """The running systemd: unit files in ``unit_dir``, ``systemctl`` for the rest."""

    def __init__(self, unit_dir: Path = UNIT_DIR, runtime_dir: Path = RUNTIME_DIR) -> None:
        self.unit_dir, self.runtime_dir = unit_dir, runtime_dir

    def check(self) -> str:
        """The ``systemctl`` to run; raises :class:`SystemdMissing` saying why not."""
        systemctl = shutil.which("systemctl")
        if not self.runtime_dir.is_dir():
            raise SystemdMissing(
                f"systemd is not running here ({self.runtime_dir} does not exist: another "
                "init, a container or a chroot), so no unit was written. Fix: run "
                "`lichen run` under the supervisor this system has, or print the unit "
                "with `lichen service install --dry-run` for a system that runs systemd"
            )
        if systemctl is None:
            raise SystemdMissing("systemctl is not on PATH, so no unit was written")
        return systemctl

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [self.check(), *args]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise LichenError(f"`{' '.join(command)}` failed ({result.returncode}): {detail}")
        return result

    def unit_path(self, name: str) -> Path:
        return self.unit_dir / name

    def ours(self, name: str) -> bool | None:
        """None if the unit file is absent, else whether we wrote it (its marker)."""
        try:
            with self.unit_path(name).open(encoding="utf-8", errors="replace") as f:
                return f.readline().startswith(MARKER)
        except FileNotFoundError:
            return None

    def write_unit(self, name: str, text: str, *, force: bool = False) -> UnitWrite:
        """Write ``text`` to the unit file ``name`` unless it already says exactly
        that; a file someone else wrote is replaced only with ``force``."""
        path = self.unit_path(name)
        try:
            current: str | None = path.read_text("utf-8")
        except FileNotFoundError:
            current = None
        if current == text:
            return UnitWrite(path, changed=False)
        if current is not None and not current.startswith(MARKER) and not force:
            raise LichenError(
                f"{path} exists and was not written by `lichen service install`; it was left "
                "as it is. Fix: move it away, or --force to replace it"
            )
        atomic_write(path, text.encode("utf-8"), mode=0o644)
        return UnitWrite(path, changed=True)

    def remove_unit(self, name: str, *, force: bool = False) -> bool:
        """Delete the unit file ``name`` if we wrote it (or with ``force``); False if
        there was none."""
        ours = self.ours(name)
        if ours is None:
            return False
        if not ours and not force:
            raise LichenError(
                f"{self.unit_path(name)} was not written by `lichen service install`; it "
                "was left as it is. Fix: --force to remove it"
            )
        self.unit_path(name).unlink()
        return True

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show UNIT -p …`` as a dict."""
        args = ["show", unit, "--no-pager"] + [f"--property={p}" for p in properties]
        out = self.systemctl(*args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
