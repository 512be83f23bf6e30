"""Simulated sensors: realistic readings without hardware (the default of ``make run``)."""

from .sensor import SimConfig, SimSensor

__all__ = ["SimConfig", "SimSensor"]
