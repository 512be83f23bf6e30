"""Digital event inputs — contacts, push buttons, PIR motion sensors: every change
of the input is an urgent reading.

Each wraps a gpiozero device made on the runtime's pin factory. The first
reading of an instance is the input's state at start (so the log knows whether
the door was open when the board rebooted); after that, one reading per
change, written to the log at once.

gpiozero's ``MotionSensor`` polls its pin into a short queue and compares the
queue's mean with a threshold, which smooths the twitchy output some PIR
modules have; the motion sensor records each change of the smoothed state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from agent.errors import ConfigError
from agent.plugin_api import FieldSpec, SensorContext, Value, setting

from ._base import EventSensor, InputConfig, Pull, bounce_field

__all__ = [
    "ButtonConfig",
    "ButtonSensor",
    "DigitalInputConfig",
    "DigitalInputSensor",
    "MotionConfig",
    "MotionSensor",
]

MAX_FIELD_NAME = 64


def _check_field_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_FIELD_NAME or not name.replace("_", "a").isalnum():
        raise ValueError(f"must be 1 to {MAX_FIELD_NAME} letters, digits or underscores")


@dataclass(frozen=True, kw_only=True)
class DigitalInputConfig(InputConfig):
    bounce_time: float | None = bounce_field()
    field_name: str = setting(
        "active",
        check=_check_field_name,
        help='the field each reading sets, e.g. field_name = "open" for a door contact',
    )
    device_class: str | None = setting(
        None, help='a hint for dashboards, e.g. "door", "window", "moisture", "opening"'
    )


class DigitalInputSensor(EventSensor):
    """A digital input — a reed switch, a float switch, a rain sensor's comparator
    output — recorded on every change (gpiozero's ``DigitalInputDevice``).

    Wiring (a door's reed switch, held closed by the door's magnet while it is shut)::

        GPIO17 (header pin 11) ──── reed switch ──── GND (header pin 9)

    With ``pull = "up"`` the pin reads low while the switch is closed. Report
    ``open = true`` when the switch opens: the pin then goes high, so say
    ``active = "high"``::

        [[sensors.gpio_input]]
        name = "back-door"
        pin = "GPIO17"
        pull = "up"
        active = "high"
        field_name = "open"
        device_class = "door"
        bounce_time = 0.05

    Readings: ``{<field_name>: true}`` when the input becomes active,
    ``{<field_name>: false}`` when it becomes inactive.
    """

    Config = DigitalInputConfig
    config: DigitalInputConfig

    def __init__(self, config: DigitalInputConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self.fields = {config.field_name: FieldSpec(device_class=config.device_class)}

    def make_device(self, gpiozero: ModuleType, pin: int, options: dict[str, Any]) -> Any:
        return gpiozero.DigitalInputDevice(pin, bounce_time=self.config.bounce_time, **options)

    def attach(self) -> None:
        name = self.config.field_name
        self.device.when_activated = lambda: self.post({name: True})
        self.device.when_deactivated = lambda: self.post({name: False})

    def state(self) -> Mapping[str, Value]:
        return {self.config.field_name: bool(self.device.is_active)}


@dataclass(frozen=True, kw_only=True)
class ButtonConfig(InputConfig):
    pull: Pull = setting(
        "up",
        help='the internal resistor: "up" (the usual: button to ground), "down" '
        '(button to 3.3 V) or "none"',
    )
    bounce_time: float | None = bounce_field()
    hold_time: float | None = setting(
        None,
        min=0.01,
        help="seconds a press must last to count as held (a reading with held = true), "
        "e.g. 2.0; leave it out for no hold readings",
    )
    hold_repeat: bool = setting(
        False, help="repeat the held reading every hold_time while the button is held"
    )

    def __post_init__(self) -> None:
        if self.hold_repeat and self.hold_time is None:
            raise ConfigError(
                "hold_repeat = true needs a hold_time",
                key="hold_repeat",
                fix="set hold_time, e.g. hold_time = 2.0",
            )


class ButtonSensor(EventSensor):
    """A push button (gpiozero's ``Button``): presses, releases and long presses.

    Wiring (the usual way, with the Pi's internal pull-up)::

        GPIO27 (header pin 13) ──── button ──── GND (header pin 14)

    Example configuration::

        [[sensors.gpio_button]]
        name = "reset-button"
        pin = "GPIO27"
        bounce_time = 0.02
        hold_time = 3.0

    Readings: ``{pressed: true}`` on a press; ``{pressed: true, held: true,
    duration: s}`` once the press has lasted ``hold_time`` (and every
    ``hold_time`` after that with ``hold_repeat``); ``{pressed: false,
    duration: s}`` on release, with how long the button was down.
    """

    Config = ButtonConfig
    config: ButtonConfig
    fields: Mapping[str, FieldSpec] = {
        "pressed": FieldSpec(),
        "held": FieldSpec(),
        "duration": FieldSpec(unit="s", resolution=0.01, device_class="duration"),
    }

    def __init__(self, config: ButtonConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self._pressed_at: float | None = None

    def make_device(self, gpiozero: ModuleType, pin: int, options: dict[str, Any]) -> Any:
        cfg = self.config
        return gpiozero.Button(
            pin,
            bounce_time=cfg.bounce_time,
            hold_time=cfg.hold_time if cfg.hold_time is not None else 1.0,
            hold_repeat=cfg.hold_repeat,
            **options,
        )

    def attach(self) -> None:
        self.device.when_pressed = self._pressed
        self.device.when_released = self._released
        if self.config.hold_time is not None:
            self.device.when_held = self._held

    def state(self) -> Mapping[str, Value]:
        pressed = bool(self.device.is_pressed)
        if pressed:
            self._pressed_at = time.monotonic()
        return {"pressed": pressed}

    def _duration(self) -> dict[str, Value]:
        if self._pressed_at is None:
            return {}
        return {"duration": time.monotonic() - self._pressed_at}

    def _pressed(self) -> None:
        self._pressed_at = time.monotonic()
        self.post({"pressed": True})

    def _held(self) -> None:
        self.post({"pressed": True, "held": True, **self._duration()})

    def _released(self) -> None:
        values: dict[str, Value] = {"pressed": False, **self._duration()}
        self._pressed_at = None
        self.post(values)


@dataclass(frozen=True, kw_only=True)
class MotionConfig(InputConfig):
    queue_len: int = setting(
        1,
        min=1,
        max=1000,
        help="samples averaged (mean) before deciding (1: every sample counts; 5 "
        "ignores short glitches of a twitchy sensor)",
    )
    sample_rate: float = setting(
        10.0, min=0.1, max=1000.0, help="samples of the pin per second, e.g. 10"
    )
    threshold: float = setting(
        0.5,
        min=0.01,
        max=0.99,
        help="share of active samples in the queue that means motion, e.g. 0.5",
    )


class MotionSensor(EventSensor):
    """A passive-infrared motion sensor (gpiozero's ``MotionSensor``).

    Wiring (HC-SR501; its output is 3.3 V, safe for the Pi)::

        VCC ──── 5V     (header pin 2)
        OUT ──── GPIO22 (header pin 15)
        GND ──── GND    (header pin 6)

    Example configuration::

        [[sensors.gpio_motion]]
        name = "hallway"
        pin = "GPIO22"
        queue_len = 3

    Readings: ``{motion: true}`` when motion starts, ``{motion: false}`` when
    the sensor's output falls again (after the module's own hold time, set by
    its potentiometer on an HC-SR501).
    """

    Config = MotionConfig
    config: MotionConfig
    fields: Mapping[str, FieldSpec] = {"motion": FieldSpec(device_class="motion")}

    def make_device(self, gpiozero: ModuleType, pin: int, options: dict[str, Any]) -> Any:
        cfg = self.config
        return gpiozero.MotionSensor(
            pin,
            queue_len=cfg.queue_len,
            sample_rate=cfg.sample_rate,
            threshold=cfg.threshold,
            **options,
        )

    def attach(self) -> None:
        self.device.when_motion = lambda: self.post({"motion": True})
        self.device.when_no_motion = lambda: self.post({"motion": False})

    def state(self) -> Mapping[str, Value]:
        return {"motion": bool(self.device.motion_detected)}
