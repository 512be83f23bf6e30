"""Lichen as a system service: the systemd units and installing them.

:mod:`.unit` renders the units from a :class:`ServiceSpec`; :mod:`.systemd`
writes them and drives ``systemctl``; :mod:`.firstboot` picks up the node's
configuration from the SD card's boot partition. The notify protocol the running agent
speaks lives in :mod:`agent.sdnotify`.
"""

from __future__ import annotations

from . import systemd, unit
from .systemd import *
from .unit import *

__all__: list[str] = []
__all__ += systemd.__all__
__all__ += unit.__all__
