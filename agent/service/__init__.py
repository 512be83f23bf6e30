"""Lichen as a system service: the systemd units and installing them.

:mod:`.unit` renders the units from a :class:`ServiceSpec`; :mod:`.systemd`
writes them and drives ``systemctl``. The notify protocol the running agent
speaks lives in :mod:`agent.sdnotify`.
"""

from __future__ import annotations

from .systemd import Systemd, SystemdMissing, UnitWrite
from .unit import (
    DEVICE_GROUPS,
    MARKER,
    SERVICE_UNIT,
    STATE_ROOT,
    ServiceSpec,
    executable_path,
    render_service,
)

__all__ = [
    "DEVICE_GROUPS",
    "MARKER",
    "SERVICE_UNIT",
    "STATE_ROOT",
    "ServiceSpec",
    "Systemd",
    "SystemdMissing",
    "UnitWrite",
    "executable_path",
    "render_service",
]
