"""Home Assistant discovery and JSON state: payloads checked against the keys
documented in docs/homeassistant.md, retained flags checked on a real broker."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.plugin_api import SensorReading
from agent.testing import wait_until
from agent.uplink.wire import Topics
from lichen_mqtt import DISCOVERY_KEYS, MqttUplink
from lichen_mqtt.homeassistant import (
    Device,
    HomeAssistant,
    default_entity_id,
    device_class_for,
    object_id,
)
from lichen_mqtt.tests.context import retained, subscribed
from lichen_mqtt.tests.helpers import fast_config, publish, running, uplink_context
from tests.helpers.broker import Broker

DOC = Path(__file__).resolve().parents[3] / "docs" / "homeassistant.md"


def documented_keys() -> dict[str, set[str]]:
    """The keys docs/homeassistant.md lists, by block: ``always``, ``sometimes``,
    ``device`` and ``origin``."""
    text = DOC.read_text()
    section = text.split("## Discovery config keys", 1)[1].split("\n### ", 1)[0]
    keys: dict[str, set[str]] = {"always": set(), "sometimes": set(), "device": set()}
    for key, when in re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", section, re.MULTILINE):
        if key.startswith("device."):
            keys["device"].add(key.removeprefix("device."))
        else:
            keys["always" if when.strip() == "always" else "sometimes"].add(key)
    keys["origin"] = set(re.findall(r"`origin\.([a-z_]+)`", section))
    return keys


def reading(ts_ms: int = 1_718_000_000_000, temperature: float = 21.53) -> SensorReading:
    return SensorReading(
        collection="readings/garden",
        sensor="garden",
        plugin="sim",
        ts_ms=ts_ms,
        values={"temperature": temperature, "humidity": 40.1, "open": False, "state": "ok"},
        fields={
            "temperature": {"unit": "°C", "resolution": 0.01, "device_class": "temperature"},
            "humidity": {"unit": "%", "resolution": 0.1, "device_class": "humidity"},
            "open": {"device_class": "door"},
            "state": {"device_class": "not-a-class"},
        },
    )


def check_config(config: dict[str, Any]) -> None:
    documented = documented_keys()
    assert set(config) >= documented["always"], "an always-present key is missing"
    assert set(config) <= documented["always"] | documented["sometimes"], "undocumented key"
    assert set(config["device"]) == documented["device"]
    assert set(config["origin"]) == documented["origin"]


def test_the_documented_keys_are_the_code_s_keys() -> None:
    documented = documented_keys()
    assert documented["always"] == DISCOVERY_KEYS["required"]
    assert documented["sometimes"] == DISCOVERY_KEYS["optional"]
    assert documented["device"] == DISCOVERY_KEYS["device"]
    assert documented["origin"] == DISCOVERY_KEYS["origin"]


def test_discovery_payloads() -> None:
    device = Device("lc1node", "Lichen lc1node", "Pi Zero 2 W", "0.1.0")
    ha = HomeAssistant(device, availability_topic="lichen/v1/default/lc1node/status")
    messages = ha.observe(reading())
    configs = {m.topic: json.loads(m.payload) for m in messages if m.topic.endswith("/config")}
    assert set(configs) == {
        "homeassistant/sensor/lc1node_garden_temperature/config",
        "homeassistant/sensor/lc1node_garden_humidity/config",
        "homeassistant/binary_sensor/lc1node_garden_open/config",
        "homeassistant/sensor/lc1node_garden_state/config",
    }
    for config in configs.values():
        check_config(config)
    temperature = configs["homeassistant/sensor/lc1node_garden_temperature/config"]
    assert temperature == {
        "unique_id": "lc1node_garden_temperature",
        "default_entity_id": "sensor.lc1node_garden_temperature",
        "name": "garden temperature",
        "state_topic": "lichen/state/lc1node/garden",
        "value_template": "{{ value_json.temperature }}",
        "availability_topic": "lichen/v1/default/lc1node/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": ["lc1node"],
            "name": "Lichen lc1node",
            "manufacturer": "Lichen",
            "model": "Pi Zero 2 W",
            "sw_version": "0.1.0",
        },
        "origin": {"name": "Lichen", "sw_version": "0.1.0"},
        "device_class": "temperature",
        "state_class": "measurement",
        "unit_of_measurement": "°C",
        "suggested_display_precision": 2,
    }
    door = configs["homeassistant/binary_sensor/lc1node_garden_open/config"]
    assert door["device_class"] == "door"
    assert door["value_template"] == "{{ 'ON' if value_json.open else 'OFF' }}"
    assert "state_class" not in door and "unit_of_measurement" not in door
    text = configs["homeassistant/sensor/lc1node_garden_state/config"]
    assert "device_class" not in text and "state_class" not in text  # unknown class left out
    (state,) = [m for m in messages if not m.topic.endswith("/config")]
    assert (state.topic, state.qos, state.retain) == ("lichen/state/lc1node/garden", 0, False)
    assert json.loads(state.payload) == {
        "ts": 1_718_000_000_000,
        "temperature": 21.53,
        "humidity": 40.1,
        "open": False,
        "state": "ok",
    }
    assert all(m.qos == 1 and m.retain for m in messages if m.topic.endswith("/config"))
    # a second reading of the same sensor: only its state
    again = ha.observe(reading(temperature=float("nan")))
    assert [m.topic for m in again] == ["lichen/state/lc1node/garden"]
    assert json.loads(again[0].payload)["temperature"] is None


def test_entities_are_named_after_the_node_and_keep_the_id_s_unique_id() -> None:
    """A node called "Shed 1" has ``sensor.shed_1_…`` entities; renamed, its
    configs keep their topics and unique ids (Home Assistant keeps the entity),
    only the id a newly discovered entity would get follows the name."""

    def configs(name: str) -> dict[str, dict[str, Any]]:
        device = Device("lc1node", name or "Lichen lc1node", "m", "0.1.0", entity_name=name)
        ha = HomeAssistant(device, availability_topic="lichen/v1/default/lc1node/status")
        return {
            m.topic: json.loads(m.payload)
            for m in ha.observe(reading())
            if m.topic.endswith("/config")
        }

    named, renamed, unnamed = configs("Shed 1"), configs("barn"), configs("")
    topic = "homeassistant/sensor/lc1node_garden_temperature/config"
    folded = configs("Gewächshaus Süd")[topic]["default_entity_id"]
    assert folded == "sensor.gewachshaus_sud_garden_temperature"
    assert configs("温室")[topic]["default_entity_id"] == "sensor.lc1node_garden_temperature"
    assert set(named) == set(renamed) == set(unnamed)  # topics: the node id's
    topic = "homeassistant/sensor/lc1node_garden_temperature/config"
    assert named[topic]["default_entity_id"] == "sensor.shed_1_garden_temperature"
    assert renamed[topic]["default_entity_id"] == "sensor.barn_garden_temperature"
    assert unnamed[topic]["default_entity_id"] == "sensor.lc1node_garden_temperature"
    door = "homeassistant/binary_sensor/lc1node_garden_open/config"
    assert named[door]["default_entity_id"] == "binary_sensor.shed_1_garden_open"
    for topic_ in named:
        assert named[topic_]["unique_id"] == renamed[topic_]["unique_id"]
        assert named[topic_]["unique_id"] == unnamed[topic_]["unique_id"]
        assert named[topic_]["device"]["identifiers"] == ["lc1node"]
    assert named[topic]["device"]["name"] == "Shed 1"


@pytest.mark.parametrize(
    ("component", "declared", "expected"),
    [
        ("sensor", "temperature", "temperature"),
        ("sensor", "CO2", "carbon_dioxide"),
        ("sensor", "pm2.5", "pm25"),
        ("sensor", "door", None),
        ("sensor", None, None),
        ("binary_sensor", "door", "door"),
        ("binary_sensor", "contact", "opening"),
        ("binary_sensor", "temperature", None),
        ("binary_sensor", "problem", "problem"),
    ],
)
def test_device_classes(component: str, declared: str | None, expected: str | None) -> None:
    assert device_class_for(component, declared) == expected


def test_object_ids_are_safe() -> None:
    assert object_id("lc1x", "living room", "pm2.5") == "lc1x_living_room_pm2_5"


def test_default_entity_ids_are_home_assistant_slugs() -> None:
    """Home Assistant reads ``default_entity_id`` (``object_id`` stopped working in
    2026.4): ``<component>.<slug>``, lowercase, single underscores."""
    assert default_entity_id("sensor", "lc1X_Tank-Level__2") == "sensor.lc1x_tank_level_2"
    assert default_entity_id("binary_sensor", "lc1x_door_open") == "binary_sensor.lc1x_door_open"
    assert default_entity_id("sensor", "--") == "sensor.lichen"


@pytest.mark.slow
async def test_discovery_and_state_on_a_real_broker(tmp_path: Path, mosquitto: Broker) -> None:
    context = uplink_context(0, node_name="garden-shed")
    node_id = context.node_id
    uplink = MqttUplink(fast_config(mosquitto.url, homeassistant=True), context)
    host, port = mosquitto.host, mosquitto.port
    async with (
        subscribed(host, port, ["homeassistant/#", "lichen/state/#"]) as live,
        running(uplink),
    ):
        await wait_until(lambda: context.connected, what="the connection")
        context.add_reading(reading())
        await wait_until(lambda: len(live.on(f"/{node_id}/garden")) == 1, what="the state")
        await wait_until(lambda: len(live.on("/config")) == 4, what="four configs")

        # a newcomer sees the configs retained, and no retained state
        configs = await retained(host, port, "homeassistant/+/+/config")
        assert len(configs) == 4 and all(m.retain for m in configs)
        for message in configs:
            check_config(json.loads(message.payload))
            payload = json.loads(message.payload)
            assert payload["device"]["identifiers"] == [node_id]
            assert payload["device"]["name"] == "garden-shed"
            assert payload["default_entity_id"].split(".")[1].startswith("garden_shed_garden_")
            assert payload["unique_id"].startswith(f"{node_id}_garden_")
        assert await retained(host, port, "lichen/state/#") == []
        (state,) = live.on(f"/{node_id}/garden")
        assert json.loads(state.payload)["temperature"] == 21.53 and state.qos == 0

        # availability: the status topic the configs name says online
        topics = Topics("default", node_id)
        assert json.loads(configs[0].payload)["availability_topic"] == topics.status
        status = await retained(host, port, topics.status)
        assert [m.payload for m in status] == [b"online"]

        # Home Assistant restarts: every config again, then the latest state
        publish(mosquitto, "homeassistant/status", b"online")
        await wait_until(lambda: len(live.on("/config")) == 8, what="configs republished")
        await wait_until(lambda: len(live.on(f"/{node_id}/garden")) == 2, what="state again")
        publish(mosquitto, "homeassistant/status", b"offline")
        await asyncio.sleep(0.3)
        assert len(live.on("/config")) == 8  # "offline" asks for nothing
