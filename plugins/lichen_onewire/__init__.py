"""DS18B20 (and other w1_therm) temperature probes through the Linux 1-Wire sysfs tree."""

from .sensor import OneWireConfig, OneWireSensor

__all__ = ["OneWireConfig", "OneWireSensor"]
