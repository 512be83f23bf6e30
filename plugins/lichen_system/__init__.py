"""Board health: CPU temperature, load, memory, disk, uptime and Raspberry Pi throttling."""

from .sensor import SystemConfig, SystemSensor

__all__ = ["SystemConfig", "SystemSensor"]
