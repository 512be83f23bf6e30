"""The serial sensor in a real agent, fed by a "microcontroller" over socat ptys.

Every assertion is on what the log holds: readings (values, quality), the
health readings, and the ``_sensors`` description — never on internal calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.readings import DecodedReading
from agent.testing import AgentHarness
from lichen_serial.payloads import Status

from .fakes import SOCAT, FakeDevice, PtyPair

pytestmark = pytest.mark.skipif(SOCAT is None, reason="needs socat")

COLLECTION = "readings/weather"


def config(port: Path, **extra: object) -> str:
    """lichen.toml text: fast flushes, health and reconnection, plus ``extra`` keys."""
    keys: dict[str, object] = {
        "name": "weather",
        "port": str(port),
        "health_interval": 0.05,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    } | extra
    lines = ["[log]", "flush_interval = 0.05", "[[sensors.serial]]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[PtyPair]:
    with PtyPair(tmp_path) as pair:
        yield pair


def values(agent: AgentHarness, field: str = "temperature") -> list[object]:
    return [r.values[field] for r in agent.readings(COLLECTION) if field in r.values]


def health(agent: AgentHarness) -> dict[str, object]:
    """The latest health reading in the log ({} if none yet)."""
    rows = [r for r in agent.readings(COLLECTION) if "_frames_lost" in r.values]
    return dict(rows[-1].values) if rows else {}


def device_readings(agent: AgentHarness) -> list[DecodedReading]:
    return [r for r in agent.readings(COLLECTION) if "temperature" in r.values]


def never_failed(agent: AgentHarness) -> bool:
    """The instance as ``lichen status`` shows it: running, never restarted."""
    (sensor,) = agent.status()["sensors"]
    return bool(
        sensor["state"] == "running" and sensor["restarts"] == 0 and sensor["last_error"] is None
    )


def connected(ptys: PtyPair, boot_id: int = 1) -> FakeDevice:
    """The device end, once the agent has opened its end (it sends a REQUEST)."""
    device = ptys.fake_device(boot_id)
    device.wait_for_request()
    return device


@contextmanager
def agent_with_device(
    ptys: PtyPair, tmp_path: Path, **extra: object
) -> Iterator[tuple[AgentHarness, FakeDevice]]:
    """An agent reading the port (``extra``: more keys), and the device end once
    the agent has opened its end and the device has described its channels."""
    with AgentHarness(config(ptys.host, **extra), tmp_path / "node") as agent:
        device = connected(ptys)
        device.describe()
        yield agent, device


def test_readings_land_with_values_units_and_description(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path) as (agent, device):
        device.send(device.readings(2137, 543, 1))
        device.send(device.readings(-405, 1000, 0))
        device.send_readings(-4000, status=Status.CLIPPED)
        agent.wait_for(lambda: len(device_readings(agent)) >= 3)
        readings = device_readings(agent)
        assert [r.values for r in readings[:2]] == [
            {"temperature": 21.37, "humidity": 54.3, "open": True},
            {"temperature": -4.05, "humidity": 100.0, "open": False},
        ]
        assert [r.quality for r in readings] == [None, None, "clipped"]
        assert readings[2].values == {"temperature": -40.0, "humidity": 50.0}
        described = agent.description(COLLECTION)
        assert described is not None and described["plugin"] == "serial"
        fields = described["fields"]
        assert fields["temperature"] == {
            "unit": "°C",
            "resolution": 0.01,
            "device_class": "temperature",
        }
        assert fields["humidity"] == {"unit": "%", "resolution": 0.1, "device_class": "humidity"}
        assert fields["open"] == {"device_class": "door"}
        assert fields["_frames_lost"] == {"unit": "frames", "resolution": 1}
        assert never_failed(agent)


def test_garbage_and_line_noise_between_frames(ptys: PtyPair, tmp_path: Path) -> None:
    noise = [b"\xff\xfe\x00\x13garbage", b"\x00", b"AT+RESET\r\n", bytes(range(256)), b"\x00\x00"]
    with AgentHarness(config(ptys.host), tmp_path / "node") as agent:
        device = connected(ptys)
        device.send(b"boot banner v1.2\r\n")
        device.describe()
        sent = list(range(2000, 2040))
        for i, t in enumerate(sent):
            device.send(noise[i % len(noise)] + device.readings(t))
        agent.wait_for(lambda: len(values(agent)) >= len(sent))
        agent.wait_for(lambda: bool(health(agent)) and health(agent)["_bad_frames"] != 0)
        assert values(agent) == [t / 100 for t in sent]  # every frame, nothing invented
        report = health(agent)
        assert report["_frames_lost"] == 0 and report["_reboots"] == 0


def test_a_corrupted_frame_is_dropped_and_counted(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path) as (agent, device):
        frames = [device.readings(t) for t in (2100, 2200, 2300)]
        broken = bytearray(frames[1])
        broken[len(broken) // 2] ^= 0x10  # a bit flipped on the line
        device.send(frames[0] + bytes(broken) + frames[2])
        # counted as a CRC error, and as lost once the next frame shows the gap
        agent.wait_for(lambda: health(agent).get("_frames_lost") == 1)
        agent.wait_for(lambda: len(values(agent)) >= 2)
        assert values(agent) == [21.0, 23.0]
        assert health(agent)["_crc_errors"] == 1


def test_lost_frames_are_detected_and_counted(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path) as (agent, device):
        device.send_readings(2000, 2001)
        device.encoder.counter += 3  # three frames the line swallowed
        device.send_readings(2002)
        device.encoder.counter += 2
        device.send_readings(2003)
        agent.wait_for(lambda: health(agent).get("_frames_lost") == 5)
        agent.wait_for(lambda: len(values(agent)) >= 4)
        assert values(agent) == [20.0, 20.01, 20.02, 20.03]
        assert health(agent)["_reboots"] == 0


def test_device_reboots_mid_frame(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path) as (agent, device):
        device.send_readings(1000, 1001)
        half = device.readings(1002)
        device.send(half[: len(half) // 2])  # the reset line fires here
        device.reboot(boot_id=2)
        device.describe()
        device.send_readings(1100, 1101)
        agent.wait_for(lambda: len(values(agent)) >= 4)
        agent.wait_for(lambda: health(agent).get("_reboots") == 1)
        assert values(agent) == [10.0, 10.01, 11.0, 11.01]
        report = health(agent)
        assert report["_frames_lost"] == 0  # a reboot is not loss
        assert report["_bad_frames"] == 1  # the half frame


@pytest.mark.slow
def test_after_a_reboot_without_description_the_agent_asks(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path) as (agent, device):
        device.send_readings(1000)
        agent.wait_for(lambda: len(values(agent)) >= 1)
        device.reboot(boot_id=7)  # its boot-time DESCRIBE frames were lost
        device.send_readings(1500)  # not recorded: the channels may have changed
        device.wait_for_request(2)  # 1: on connect; 2: after the reboot
        device.describe()  # what a device does on a REQUEST
        device.send_readings(1600)
        agent.wait_for(lambda: len(values(agent)) >= 2)
        agent.wait_for(lambda: health(agent).get("_undescribed", 0) != 0)
        assert values(agent) == [10.0, 16.0]
        assert health(agent)["_undescribed"] == 2  # temperature and humidity of 1500


@pytest.mark.slow
def test_device_disappears_and_comes_back(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path) as (agent, device):
        device.send_readings(1000, 1001)
        agent.wait_for(lambda: len(values(agent)) >= 2)
        ptys.stop()  # the USB cable is pulled: both ends vanish
        agent.wait_for(lambda: health(agent).get("_disconnects") == 1)
        ptys.start()  # … and plugged back in, under the same path
        device.connect()
        device.wait_for_request(2)  # the agent reopened the port
        device.send_readings(1002, 1003)  # same boot: it kept running
        agent.wait_for(lambda: len(values(agent)) >= 4)
        assert values(agent) == [10.0, 10.01, 10.02, 10.03]
        assert health(agent)["_reboots"] == 0
        assert never_failed(agent)  # the plugin rode it out; the agent restarted nothing


def test_a_device_plugged_in_after_the_agent_started(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    with AgentHarness(config(pair.host), tmp_path / "node") as agent, pair:
        device = connected(pair, boot_id=3)
        device.describe()
        device.send_readings(1234)
        agent.wait_for(lambda: values(agent) == [12.34])
        assert never_failed(agent)


def test_it_also_runs_isolated_in_its_own_process(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path, isolation="process") as (agent, device):
        device.send_readings(2000, 2001)
        agent.wait_for(lambda: len(values(agent)) >= 2)
        assert values(agent) == [20.0, 20.01]
        described = agent.description(COLLECTION)
        assert described is not None and described["fields"]["temperature"]["unit"] == "°C"


def test_health_readings_can_be_turned_off(ptys: PtyPair, tmp_path: Path) -> None:
    with agent_with_device(ptys, tmp_path, health_interval=0) as (agent, device):
        device.send_readings(1000)
        device.encoder.counter += 4  # lost frames: counted, but not recorded
        device.send(b"noise\x00")
        device.send_readings(1001)
        agent.wait_for(lambda: len(values(agent)) >= 2)
        agent.stop()  # everything pending is written
        assert health(agent) == {}
        assert all(set(r.values) == {"temperature", "humidity"} for r in agent.readings(COLLECTION))
        described = agent.description(COLLECTION)
        assert described is not None and sorted(described["fields"]) == [
            "humidity",
            "open",
            "temperature",
        ]
