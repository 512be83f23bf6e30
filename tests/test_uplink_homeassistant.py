"""A real `lichen run` with Home Assistant discovery on: the agent's own readings
reach a real Mosquitto as JSON state, with retained discovery configs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from .conftest import run_lichen
from .helpers.broker import Broker
from .test_gossip_processes import start, stop

pytestmark = pytest.mark.slow


def collect(broker: Broker, topic: str, seconds: float) -> list[Any]:
    got: list[Any] = []
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        with lock:
            got.append(message)

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(topic, 1)
    client.loop_start()
    time.sleep(seconds)
    client.loop_stop()
    client.disconnect()
    return got


def test_agent_readings_become_state_and_discovery(tmp_path: Path, mosquitto: Broker) -> None:
    home = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "garden", home=home)
    node = run_lichen("id", home=home).stdout.strip()
    config = home / "lichen.toml"
    config.write_text(
        config.read_text()
        + f'\n[[uplinks.mqtt]]\nname = "cloud"\nbroker = "{mosquitto.url}"\nhomeassistant = true\n'
    )
    agent = start(home)
    try:
        deadline = time.monotonic() + 30
        while True:
            states = collect(mosquitto, f"lichen/state/{node}/climate", 2.5)
            if states:
                break
            assert time.monotonic() < deadline, (home / "agent.log").read_text()[-2000:]
        configs = [m for m in collect(mosquitto, "homeassistant/+/+/config", 1.5) if m.retain]
    finally:
        stop([agent])
    assert agent.returncode == 0
    state = json.loads(states[-1].payload)
    assert {"temperature", "humidity"} <= set(state) and not states[-1].retain
    by_topic = {m.topic: json.loads(m.payload) for m in configs}
    temperature = by_topic[f"homeassistant/sensor/{node}_climate_temperature/config"]
    assert temperature["state_topic"] == f"lichen/state/{node}/climate"
    assert temperature["unit_of_measurement"] == "°C"
    assert temperature["device"]["identifiers"] == [node]
    # named after the node's name ([node] name = "garden"); unique_id stays the id's
    assert temperature["default_entity_id"] == "sensor.garden_climate_temperature"
    assert temperature["unique_id"] == f"{node}_climate_temperature"
    assert temperature["device"]["name"] == "garden"
    humidity = by_topic[f"homeassistant/sensor/{node}_climate_humidity/config"]
    assert humidity["availability_topic"] == temperature["availability_topic"]
    assert all(
        c["unique_id"] and c["state_topic"].startswith("lichen/state/") for c in by_topic.values()
    )
