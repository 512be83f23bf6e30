"""GPIO sensors on gpiozero: digital inputs, buttons, PIR motion, HC-SR04 distance, MCP3xxx ADCs.

Every device is made on the runtime's pin factory (``[gpio] pin_factory``;
gpiozero's ``MockFactory`` in tests), pin names are resolved through the board
profile, and every pin or bus is claimed at start, so two instances on one pin,
a reserved pin or an unknown pin name stop the agent with a message naming
the pin, the board and the reason.
"""

from .adc import AnalogConfig, AnalogSensor
from .distance import DistanceConfig, DistanceSensor
from .inputs import (
    ButtonConfig,
    ButtonSensor,
    DigitalInputConfig,
    DigitalInputSensor,
    MotionConfig,
    MotionSensor,
)

__all__ = [
    "AnalogConfig",
    "AnalogSensor",
    "ButtonConfig",
    "ButtonSensor",
    "DigitalInputConfig",
    "DigitalInputSensor",
    "DistanceConfig",
    "DistanceSensor",
    "MotionConfig",
    "MotionSensor",
]
