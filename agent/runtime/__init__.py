"""The running agent: supervisor, sensor threads, status, logs.

Names are imported on first use, so reading a status snapshot does not load
the whole runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__all__ = ["Agent", "configure_sensors", "read_status"]

_WHERE = {"Agent": "agent", "configure_sensors": "agent", "read_status": "status"}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

if TYPE_CHECKING:
    from .agent import Agent, configure_sensors
    from .status import read_status
