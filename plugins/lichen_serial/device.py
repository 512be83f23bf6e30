"""What the agent knows about the device at the other end of the line.

A bridge device describes itself: one DESCRIBE frame per channel (name, unit,
resolution, kind), at boot, now and then, and when the agent asks. Its
READINGS frames then refer to channels by id only. :class:`DeviceModel`
keeps the description and turns READINGS into Lichen readings — values by
field name, scaled to the channel's resolution, with a ``quality`` flag when
the device doubted a value — so a ``lichen.toml`` needs no field mapping.

It also keeps the link's health. Lost frames, CRC failures, reboots and
disconnects are facts about the data as much as about the hardware: a gap in
a rain gauge's counts means something different if 40 frames were lost
there. So the sensor records them in its own collection as a *health
reading* — fields starting with ``_``, which no device channel can be named
— whenever a counter changed, at most once per ``health_interval``; values
count since the instance started (:class:`LinkHealth`).

Like the decoder it is pure: no I/O, no clock, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.readings import FieldSpec, Value

from .frames import DecoderStats, Describe, Readings
from .payloads import Channel, Status

__all__ = ["HEALTH_FIELDS", "DeviceModel", "LinkHealth", "Sample"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One READINGS frame as a reading: ``values`` by field name, ``quality``
    (``None``, ``"clipped"``, ``"fault"`` or ``"clipped,fault"``), and the ids
    of channels it carried that are not described yet (their values dropped)."""

    values: dict[str, Value]
    quality: str | None
    undescribed: tuple[int, ...] = ()


class DeviceModel:
    """The device's channels as learnt from DESCRIBE frames.

    >>> from lichen_serial.payloads import Channel, RawValue, Status
    >>> model = DeviceModel()
    >>> model.learn(Describe(boot_id=1, counter=0, count=1, id=0,
    ...                      channel=Channel("temperature", unit="°C", exponent=-2)))
    True
    >>> model.sample(Readings(boot_id=1, counter=1, values=(RawValue(0, -4000, Status.CLIPPED),)))
    Sample(values={'temperature': -40.0}, quality='clipped', undescribed=())
    >>> model.fields()
    {'temperature': FieldSpec(unit='°C', resolution=0.01, device_class=None)}
    """

    def __init__(self) -> None:
        self.channels: dict[int, Channel] = {}
        #: how many channels the device says it has (None: not described yet)
        self.count: int | None = None

    @property
    def complete(self) -> bool:
        """True once every channel of the device has been described."""
        return self.count is not None and len(self.channels) == self.count

    def learn(self, event: Describe) -> bool:
        """Take in one DESCRIBE frame; True if the description changed.

        A different channel count means different firmware: everything known
        is dropped first. A name moving to another id leaves its old id."""
        if event.count != self.count:
            self.channels.clear()
            self.count = event.count
        if self.channels.get(event.id) == event.channel:
            return False
        for other, channel in list(self.channels.items()):
            if channel.name == event.channel.name and other != event.id:
                del self.channels[other]
        self.channels[event.id] = event.channel
        return True

    def forget(self) -> None:
        """The device rebooted: it may run other firmware now, and describes
        itself again at boot, so nothing known is trusted any more."""
        self.channels.clear()
        self.count = None

    def fields(self) -> dict[str, FieldSpec]:
        """The field specs of every described channel, by field name."""
        return {c.name: c.field_spec() for _, c in sorted(self.channels.items())}

    def sample(self, event: Readings) -> Sample:
        """The reading a READINGS frame stands for."""
        values: dict[str, Value] = {}
        flags: set[str] = set()
        undescribed: list[int] = []
        for item in event.values:
            channel = self.channels.get(item.channel)
            if channel is None:
                undescribed.append(item.channel)
            elif item.status == Status.FAULT:
                flags.add("fault")  # the device says the value means nothing
            else:
                if item.status == Status.CLIPPED:
                    flags.add("clipped")
                values[channel.name] = channel.value(item.raw)
        return Sample(values, ",".join(sorted(flags)) or None, tuple(undescribed))


# ------------------------------------------------------------------ health

_FRAMES = FieldSpec(unit="frames", resolution=1)
_COUNTERS = ("frames_lost", "crc_errors", "bad_frames", "reboots", "disconnects", "undescribed")

#: the fields of a health reading, as described in ``_sensors``
HEALTH_FIELDS: dict[str, FieldSpec] = {
    "_frames_lost": _FRAMES,
    "_crc_errors": _FRAMES,
    "_bad_frames": _FRAMES,
    "_reboots": FieldSpec(unit="reboots", resolution=1),
    "_disconnects": FieldSpec(unit="disconnects", resolution=1),
    "_undescribed": FieldSpec(unit="values", resolution=1),
}


@dataclass(slots=True)
class LinkHealth:
    """Counters of one sensor instance, and when they were last recorded.

    >>> health = LinkHealth(interval=10.0)
    >>> health.disconnects += 1
    >>> health.due(now=100.0)  # doctest: +NORMALIZE_WHITESPACE
    {'_frames_lost': 0, '_crc_errors': 0, '_bad_frames': 0, '_reboots': 0,
     '_disconnects': 1, '_undescribed': 0}
    >>> health.disconnects += 1
    >>> health.due(now=105.0) is None          # changed, but recorded 5 s ago
    True
    >>> health.due(now=110.0)["_disconnects"]
    2
    """

    interval: float
    frames_lost: int = 0
    crc_errors: int = 0
    bad_frames: int = 0
    reboots: int = 0
    disconnects: int = 0
    undescribed: int = 0
    _recorded: tuple[int, ...] = ()
    _recorded_at: float | None = None

    def update(self, stats: DecoderStats) -> None:
        """Take the decoder's running totals (it outlives reconnections)."""
        self.frames_lost = stats.lost
        self.crc_errors = stats.crc_errors
        self.bad_frames = stats.malformed
        self.reboots = stats.reboots

    def snapshot(self) -> dict[str, int]:
        """The counters as a health reading's values."""
        return {f"_{name}": getattr(self, name) for name in _COUNTERS}

    def due(self, now: float) -> dict[str, int] | None:
        """The health reading to record at ``now`` (monotonic seconds), or None:
        nothing changed since the last one, it is too soon, or health is off."""
        if self.interval <= 0:
            return None
        snapshot = self.snapshot()
        current = tuple(snapshot.values())
        if current == (self._recorded or (0,) * len(current)):
            return None
        if self._recorded_at is not None and now - self._recorded_at < self.interval:
            return None
        self._recorded, self._recorded_at = current, now
        return snapshot
