"""``lichen doctor``: what this board needs to run its configuration, each
problem with its fix.

Every probe reads files under one root directory (``/``, or a fake tree in
tests: ``--sysroot`` / ``LICHEN_SYSROOT``): the device-tree model, the
firmware's ``config.txt``, the device nodes of the buses, ``/sys`` for the
radios, the RTC and rfkill, systemd's files for the clock and the service.
Only two things are asked of the running system itself, and only when the
root is ``/``: ``timedatectl`` (is the clock synchronised) and ``systemctl``
(is the service running). Python modules are looked up in the running
interpreter (the one the agent runs in).

A :class:`Check` is ``ok``, ``warn`` (worth knowing, nothing is broken),
``fail`` (the agent will not do what its configuration asks) or ``skip``
(does not apply here). The command exits 1 when a check fails.
"""

from __future__ import annotations

from .core import Doctor, config_txt_lines
from .system import Check, SystemChecks

__all__ = ["Check", "Doctor", "SystemChecks", "config_txt_lines"]
