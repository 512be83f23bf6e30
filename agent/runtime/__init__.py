"""The running agent: supervisor, sensor threads and their watchdog.

Names are imported on first use, so importing the package does not load the
whole runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__all__ = ["Agent", "configure_sensors"]

_WHERE = {"Agent": "agent", "configure_sensors": "configure"}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

if TYPE_CHECKING:
    from .agent import Agent
    from .configure import configure_sensors
