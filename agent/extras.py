"""Optional dependencies: a clear error, naming what to install, when one is missing.

Hardware and role dependencies are extras (``lichen[mqtt]``, ``lichen[cloud]``,
``lichen[postgres]``, …), so ``pip install lichen`` alone has none of them.
Whatever needs one imports it through :func:`require_module` at the moment it
is first needed — before anything is created on disk — and a missing one is a
:class:`MissingExtra` saying what needs it and the command that fixes it,
rather than a ``ModuleNotFoundError`` traceback (or nothing at all)::

    client = require_module("paho.mqtt.client", install="'lichen[mqtt]'",
                            purpose="the mqtt uplink", package="paho-mqtt")
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .errors import PluginError

__all__ = ["MissingExtra", "Requirements", "require_module"]


class MissingExtra(PluginError):
    """A module an optional feature needs is not installed."""


def require_module(
    module: str, *, install: str, purpose: str, package: str | None = None
) -> ModuleType:
    """``module``, imported; or :class:`MissingExtra` naming ``purpose``, the
    missing ``package`` (default: the module's top-level name) and the fix,
    ``pip install INSTALL``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = package or module.partition(".")[0]
        detail = "" if exc.name and exc.name.startswith(module.partition(".")[0]) else f" ({exc})"
        raise MissingExtra(
            f"{purpose} needs {missing}, which is not installed{detail}. Fix: pip install {install}"
        ) from None


class Requirements:
    """The base of every plugin class (sensors, transports, uplinks): what an
    instance imports, for ``lichen doctor``."""

    @classmethod
    def requires(cls, config: Any) -> Mapping[str, str]:
        """The modules an instance with ``config`` imports when it starts, each with
        the pip requirement that installs it: ``{"smbus2": "lichen[i2c]"}``.
        ``lichen doctor`` checks them, so a missing extra is found before the
        agent runs. Nothing by default."""
        return {}
