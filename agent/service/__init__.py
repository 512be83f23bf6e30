"""Lichen as a system service: the systemd units and installing them.

:mod:`.unit` renders the units from a :class:`ServiceSpec`; :mod:`.systemd`
writes them and drives ``systemctl``; :mod:`.firstboot` picks up the node's
configuration from the SD card's boot partition. The notify protocol the running agent
speaks lives in :mod:`agent.sdnotify`.
"""

from __future__ import annotations

from .systemd import Systemd, SystemdMissing, UnitWrite
from .unit import (
    BOOT_DIRS,
    BOOT_FILES,
    DEVICE_GROUPS,
    FIRSTBOOT_UNIT,
    MARKER,
    SERVICE_UNIT,
    STATE_ROOT,
    ServiceSpec,
    executable_path,
    interpreter_of,
    render_firstboot,
    render_service,
)

__all__ = [
    "BOOT_DIRS",
    "BOOT_FILES",
    "DEVICE_GROUPS",
    "FIRSTBOOT_UNIT",
    "MARKER",
    "SERVICE_UNIT",
    "STATE_ROOT",
    "ServiceSpec",
    "Systemd",
    "SystemdMissing",
    "UnitWrite",
    "executable_path",
    "interpreter_of",
    "render_firstboot",
    "render_service",
]
