"""One life of a sensor instance: construct, ``open``, ``run``, ``close``.

The same in a sensor thread (:mod:`.sensors`) and in a process-isolated
instance's child interpreter (:mod:`.plugin_host`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..logs import event

if TYPE_CHECKING:
    from ..plugins import ConfiguredSensor
    from ..sensor_api import Sensor, SensorContext

__all__ = ["live"]

log = logging.getLogger("lichen.runtime")


def live(
    configured: ConfiguredSensor,
    context: SensorContext,
    *,
    created: Callable[[Sensor], None],
    opened: Callable[[], None],
) -> None:
    """One life of an instance, in the calling thread: construct, ``open``, ``run``,
    ``close`` — each call to the plugin marked on ``context.busy`` for the
    watchdog (the default ``run`` marks each ``sample``)."""
    context.busy = ("__init__()", time.monotonic())
    sensor = configured.cls(configured.config, context)
    created(sensor)
    try:
        context.busy = ("open()", time.monotonic())
        sensor.open()
        context.busy = None
        opened()
        sensor.run()
    finally:
        context.busy = ("close()", time.monotonic())
        try:
            sensor.close()
        except Exception as exc:
            event(
                log, "sensor close failed", logging.WARNING, sensor=configured.name, error=repr(exc)
            )
        context.busy = None
