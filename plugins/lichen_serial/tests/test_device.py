"""What the agent makes of a device: its description, its readings, its health."""

from __future__ import annotations

from agent.readings import FieldSpec
from lichen_serial.device import HEALTH_FIELDS, DeviceModel, LinkHealth, Sample
from lichen_serial.frames import Describe, Readings
from lichen_serial.payloads import Channel, Kind, RawValue, Status

from .fakes import CLIMATE


def describe(channel: Channel, channel_id: int, count: int = 3) -> Describe:
    return Describe(boot_id=1, counter=0, count=count, id=channel_id, channel=channel)


def readings(*values: RawValue) -> Readings:
    return Readings(boot_id=1, counter=5, values=values)


def described(channels: list[Channel] = CLIMATE) -> DeviceModel:
    model = DeviceModel()
    for i, channel in enumerate(channels):
        assert model.learn(describe(channel, i, len(channels)))
    return model


def test_description_is_learnt_channel_by_channel() -> None:
    model = DeviceModel()
    complete = [model.complete]
    assert model.fields() == {}
    assert model.learn(describe(CLIMATE[0], 0))
    complete.append(model.complete)
    assert not model.learn(describe(CLIMATE[0], 0))  # the periodic repeat changes nothing
    model.learn(describe(CLIMATE[1], 1))
    model.learn(describe(CLIMATE[2], 2))
    complete.append(model.complete)
    assert complete == [False, False, True]
    assert model.fields() == {
        "temperature": FieldSpec("°C", 0.01, "temperature"),
        "humidity": FieldSpec("%", 0.1, "humidity"),
        "open": FieldSpec(None, None, "door"),
    }


def test_readings_become_scaled_values_by_name() -> None:
    sample = described().sample(readings(RawValue(0, 2137), RawValue(1, 543), RawValue(2, 1)))
    assert sample == Sample({"temperature": 21.37, "humidity": 54.3, "open": True}, None)


def test_device_verdicts_become_quality_flags() -> None:
    model = described()
    clipped = model.sample(readings(RawValue(0, -4000, Status.CLIPPED), RawValue(1, 5)))
    assert clipped == Sample({"temperature": -40.0, "humidity": 0.5}, "clipped")
    fault = model.sample(readings(RawValue(0, 0, Status.FAULT), RawValue(1, 5)))
    assert fault == Sample({"humidity": 0.5}, "fault")  # the failed value is left out
    both = model.sample(readings(RawValue(0, 9, Status.FAULT), RawValue(1, 1000, Status.CLIPPED)))
    assert both == Sample({"humidity": 100.0}, "clipped,fault")


def test_undescribed_channels_are_reported_not_guessed() -> None:
    model = DeviceModel()
    model.learn(describe(CLIMATE[0], 0))
    sample = model.sample(readings(RawValue(0, 100), RawValue(1, 5), RawValue(2, 1)))
    assert sample == Sample({"temperature": 1.0}, None, (1, 2))


def test_new_count_means_new_firmware_and_a_name_moves() -> None:
    model = described()
    pressure = Channel("pressure", unit="hPa", exponent=-1)
    assert model.learn(describe(pressure, 0, count=2))  # two channels now
    assert model.channels == {0: pressure} and model.count == 2
    assert model.learn(describe(pressure, 1, count=2))  # the name moved to id 1
    assert model.channels == {1: pressure}


def test_a_reboot_forgets_the_description() -> None:
    model = described()
    model.forget()
    assert not model.complete and model.fields() == {}
    assert model.sample(readings(RawValue(0, 1))).undescribed == (0,)


def test_boolean_and_integer_channels() -> None:
    model = described([Channel("count", unit="tips"), Channel("on", kind=Kind.BOOLEAN)])
    assert model.sample(readings(RawValue(0, 12), RawValue(1, 0))).values == {
        "count": 12,
        "on": False,
    }


def test_health_fields_cannot_collide_with_channel_names() -> None:
    assert all(name.startswith("_") for name in HEALTH_FIELDS)
    assert set(LinkHealth(interval=1.0).snapshot()) == set(HEALTH_FIELDS)


def test_health_is_recorded_on_change_at_most_every_interval() -> None:
    health = LinkHealth(interval=10.0)
    assert health.due(now=0.0) is None  # nothing happened
    health.reboots = 1
    first = health.due(now=1.0)
    assert first is not None and first["_reboots"] == 1
    assert health.due(now=20.0) is None  # no change since
    health.frames_lost = 3
    assert health.due(now=5.0) is None  # too soon
    later = health.due(now=11.0)
    assert later is not None and later["_frames_lost"] == 3 and later["_reboots"] == 1


def test_health_off() -> None:
    health = LinkHealth(interval=0.0)
    health.disconnects = 5
    assert health.due(now=100.0) is None
