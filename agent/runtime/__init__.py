"""The running agent: supervisor, sensor threads, status, logs."""

from .agent import Agent, configure_sensors

__all__ = ["Agent", "configure_sensors"]
