"""The ``serial`` sensor: a microcontroller's readings, over USB or a UART.

The device runs the C library in ``firmware-bridge/`` and sends COBS-framed,
CRC-checked frames. This sensor owns the port and runs event-driven: it
reads whatever arrives, feeds the sans-IO :class:`~.frames.FrameDecoder`,
learns the channels from DESCRIBE frames (setting ``self.fields``, which
the agent reads for every reading), and emits each READINGS frame as one
reading. When the device disappears — a USB cable pulled, a board reset —
it closes the port and reopens it with backoff; the plugin never fails for
that, and lost frames, CRC errors, reboots and disconnects are recorded as
health readings (see :class:`.device.LinkHealth`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.plugin_api import Backoff, FieldSpec, Sensor, SensorConfig, SensorContext, setting

from .device import HEALTH_FIELDS, DeviceModel, LinkHealth
from .errors import PortError
from .frames import NEED_DATA, BadFrame, Describe, FrameDecoder, FramesLost, Readings, Reboot
from .link import SerialLink, check_port
from .payloads import FrameEncoder

__all__ = ["SerialConfig", "SerialSensor", "reconnect_backoff"]

READ_TIMEOUT_S = 0.1  # how long a read waits; bounds how late a stop is noticed
REQUEST_EVERY_S = 1.0  # at most one describe request per second


@dataclass(frozen=True, kw_only=True)
class SerialConfig(SensorConfig):
    port: str = setting(
        check=check_port,
        help='the device, e.g. port = "/dev/ttyACM0" (USB) or "/dev/serial0" (the '
        'Pi header UART), or a pyserial URL such as "socket://10.0.0.5:7000"',
    )
    baudrate: int = setting(115200, min=50, max=4_000_000, help="bits per second, 8N1")
    bus: str | None = setting(
        None,
        help='the board bus the port uses, e.g. bus = "uart0" for /dev/serial0 on a '
        "Raspberry Pi, so no other plugin takes its pins",
    )
    request_describe: bool = setting(
        True,
        help="ask the device to describe itself on connect, after a reboot and "
        "when it sends an unknown channel (devices that do not listen ignore it)",
    )
    health_interval: float = setting(
        10.0,
        min=0.0,
        help="record a health reading (lost frames, CRC errors, reboots, "
        "disconnects) when one changed, at most every this many seconds; 0 = never",
    )
    reconnect_min: float = setting(0.5, min=0.01, help="first wait before reopening, seconds")
    reconnect_max: float = setting(30.0, min=0.01, help="longest wait before reopening, seconds")


def reconnect_backoff(config: SerialConfig) -> Backoff:
    """The waits before reopening the port: doubling from ``reconnect_min`` up to
    ``reconnect_max`` (never below the first), without jitter — one agent and
    one device, nobody to spread out from."""
    first = config.reconnect_min
    return Backoff(first, max(first, config.reconnect_max), jitter=0.0)


class SerialSensor(Sensor):
    """Readings from a bridge device on a serial port. Example configuration::

        [[sensors.serial]]
        name = "weather"            # readings go to "readings/weather"
        port = "/dev/ttyACM0"       # an Arduino or a Pico on USB
        baudrate = 115200

    The fields are whatever the device describes (``temperature`` in °C at
    0.01, ``open`` …) plus the health fields (``_frames_lost`` …). A value the
    device marks as saturated is stored with ``quality="clipped"``; a reading
    in which it reported a failed sensor gets ``quality="fault"``, without
    that value.
    """

    Config = SerialConfig
    config: SerialConfig

    def __init__(self, config: SerialConfig, context: SensorContext) -> None:
        super().__init__(config, context)
        self._health_fields = HEALTH_FIELDS if config.health_interval > 0 else {}
        self.fields: dict[str, FieldSpec] = dict(self._health_fields)
        self.decoder = FrameDecoder()
        self.device = DeviceModel()
        self.health = LinkHealth(interval=config.health_interval)
        self.link = SerialLink(config.port, config.baudrate, read_timeout=READ_TIMEOUT_S)
        self._host = FrameEncoder(boot_id=0)  # the agent's own frames (REQUEST)
        self._last_request = -REQUEST_EVERY_S
        self._want_description = False
        self._was_unavailable = False

    @classmethod
    def claims(cls, config: SensorConfig) -> Sequence[str | int]:
        bus = getattr(config, "bus", None)
        return (f"bus:{bus}",) if bus else ()

    @classmethod
    def requires(cls, config: SensorConfig) -> Mapping[str, str]:
        return {"serial": "lichen[serial]"}

    def run(self) -> None:
        ctx = self.context
        backoff = reconnect_backoff(self.config)
        while not ctx.stopping.is_set():
            try:
                self.link.open()
            except PortError as exc:
                self._unavailable(exc)
                self._record_health()
                if not ctx.sleep(backoff.next()):
                    return
                continue
            ctx.log.info("connected to %s", self.config.port)
            self._was_unavailable = False
            try:
                self._request_description()
                self._pump(backoff)
            except PortError as exc:
                self.health.disconnects += 1
                ctx.log.warning("lost %s (%s); reconnecting", self.config.port, exc)
            finally:
                self.link.close()
                self.decoder.connection_lost()
                self._drain()
            self._record_health()
            if not ctx.sleep(backoff.next()):
                return

    def close(self) -> None:
        self.link.close()

    # ------------------------------------------------------------- the loop

    def _pump(self, backoff: Backoff) -> None:
        """Read and decode until the agent stops (returns) or the port fails (raises)."""
        ctx, decoder = self.context, self.decoder
        while not ctx.stopping.is_set():
            data = self.link.read()
            if data:
                frames = decoder.stats.frames
                decoder.receive_data(data)
                self._drain()
                if decoder.stats.frames > frames:
                    backoff.reset()  # a device that talks: the next outage starts short
            self._send_request()
            self._record_health()

    def _drain(self) -> None:
        while (event := self.decoder.next_event()) is not NEED_DATA:
            if isinstance(event, Readings):
                self._readings(event)
            elif isinstance(event, Describe):
                if self.device.learn(event):
                    self.fields = {**self.device.fields(), **self._health_fields}
                    if self.device.complete:
                        self._want_description = False
                        names = ", ".join(self.device.fields())
                        self.context.log.info("device described: %s", names)
            elif isinstance(event, Reboot):
                self.context.log.info(
                    "device rebooted (boot id %04x → %04x)", event.previous_boot_id, event.boot_id
                )
                self.device.forget()
                self._request_description()
            elif isinstance(event, FramesLost):
                self.context.log.debug("%d frames lost before #%d", event.count, event.received)
            elif isinstance(event, BadFrame):
                self.context.log.debug("bad frame (%s): %s", event.reason, event.detail)
        self.health.update(self.decoder.stats)

    def _readings(self, event: Readings) -> None:
        sample = self.device.sample(event)
        if sample.undescribed:
            self.health.undescribed += len(sample.undescribed)
            self._request_description()
        if sample.values:
            self.context.emit(sample.values, quality=sample.quality)

    def _record_health(self) -> None:
        reading = self.health.due(time.monotonic())
        if reading is not None:
            self.context.emit(reading)

    def _request_description(self) -> None:
        """Ask the device to describe itself: now, or once a second has passed
        since the last request (a request is never dropped, only delayed)."""
        self._want_description = self.config.request_describe
        self._send_request()

    def _send_request(self) -> None:
        now = time.monotonic()
        if (
            not self._want_description
            or not self.link.is_open
            or now - self._last_request < REQUEST_EVERY_S
        ):
            return
        self._want_description = False
        self._last_request = now
        self.link.write(self._host.request())

    def _unavailable(self, exc: PortError) -> None:
        """Say once per outage that the port cannot be opened; then only debug."""
        if self._was_unavailable:
            self.context.log.debug("%s", exc)
        else:
            self.context.log.warning("%s; retrying with backoff", exc)
            self._was_unavailable = True
