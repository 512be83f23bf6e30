"""I²C sensors through the agent's bus seam: the Bosch BME280 and the Sensirion SHT3x."""

from .bme280 import BME280Config, BME280Sensor
from .sht3x import SHT3xConfig, SHT3xSensor

__all__ = ["BME280Config", "BME280Sensor", "SHT3xConfig", "SHT3xSensor"]
