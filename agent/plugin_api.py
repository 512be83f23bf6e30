"""The sensor plugin API: what a plugin implements, and what the agent gives it.

A sensor plugin is a class derived from :class:`Sensor`, registered under the
``lichen.sensors`` entry-point group. The smallest useful one::

    from dataclasses import dataclass
    from agent.plugin_api import FieldSpec, Sensor, SensorConfig

    @dataclass(frozen=True, kw_only=True)
    class Config(SensorConfig):
        offset: float = 0.0

    class Thermometer(Sensor):
        Config = Config
        fields = {"temperature": FieldSpec(unit="°C", resolution=0.01)}

        def sample(self):
            return {"temperature": read_the_chip() + self.config.offset}

and in ``pyproject.toml``::

    [project.entry-points."lichen.sensors"]
    thermometer = "my_package:Thermometer"

Each configured instance (``[[sensors.thermometer]]`` table) gets its own
object and its **own thread**: ``open``, ``run``/``sample`` and ``close`` run
there, so a plugin may block (a serial read, an I²C transaction) without
slowing any other plugin or the agent. A plugin that raises, or whose ``run``
returns, is restarted with exponential backoff (1 s doubling to 60 s) and
shown in ``lichen status``; it never stops the agent.

Periodic sensors implement :meth:`Sensor.sample`; event-driven sensors
override :meth:`Sensor.run`, call :meth:`SensorContext.emit` when something
happens and return once :attr:`SensorContext.stopping` is set.

The sensor interface is declared in :mod:`agent.sensor_api`, the transport
(``lichen.transports``) and uplink (``lichen.uplinks``) interfaces in
:mod:`agent.link_api`, and what a plugin's own command (``lichen.commands``)
may use in :mod:`agent.command_api`; all are re-exported here, so this module
is the one place a plugin author imports from. It sits above the core: the
core imports the declaring modules, never this one.
"""

from __future__ import annotations

# Whole modules are re-exported through their own ``__all__``; the others only in part.
from . import command_api, extras, link_api, sensor_api
from .command_api import *
from .errors import SampleError
from .extras import *
from .i2c import I2CBus, I2CError, I2CNack
from .link_api import *
from .readings import FieldSpec, Reading, Value
from .schema import readable_file, setting
from .sensor_api import *

__all__ = [
    "FieldSpec",
    "I2CBus",
    "I2CError",
    "I2CNack",
    "Reading",
    "SampleError",
    "Value",
    "readable_file",
    "setting",
]
__all__ += command_api.__all__
__all__ += extras.__all__
__all__ += link_api.__all__
__all__ += sensor_api.__all__
