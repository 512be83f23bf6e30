"""Plain JSON state and Home Assistant MQTT discovery for this node's own readings.

Pure: :class:`HomeAssistant` turns :class:`~agent.plugin_api.SensorReading`
objects into :class:`~agent.mqtt.Message` objects, and the uplink
publishes them. ``docs/homeassistant.md`` documents every topic and key;
:data:`DISCOVERY_KEYS` is that list in code, and a test holds the two together.

Per sensor instance (``<sensor>``) and field (``<field>``)::

    <state_prefix>/<node>/<sensor>                                  QoS 0, not retained
        {"ts": 1718000000000, "temperature": 21.5, "humidity": 40.1}
    <discovery_prefix>/sensor/<node>_<sensor>_<field>/config        QoS 1, retained
    <discovery_prefix>/binary_sensor/<node>_<sensor>_<field>/config (booleans)

Availability follows the uplink's status topic (``online`` / ``offline``,
the MQTT last will), so Home Assistant greys the entities out when the node
drops off.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.mqtt import Message
from agent.plugin_api import SensorReading

__all__ = [
    "BINARY_SENSOR_DEVICE_CLASSES",
    "DISCOVERY_KEYS",
    "SENSOR_DEVICE_CLASSES",
    "Device",
    "HomeAssistant",
    "component_for",
    "default_entity_id",
    "device_class_for",
    "discovery_config",
    "object_id",
    "state_payload",
]

#: Home Assistant's sensor device classes (2024.x)
SENSOR_DEVICE_CLASSES = frozenset(
    {
        "apparent_power",
        "aqi",
        "area",
        "atmospheric_pressure",
        "battery",
        "blood_glucose_concentration",
        "carbon_dioxide",
        "carbon_monoxide",
        "conductivity",
        "current",
        "data_rate",
        "data_size",
        "date",
        "distance",
        "duration",
        "energy",
        "energy_distance",
        "energy_storage",
        "enum",
        "frequency",
        "gas",
        "humidity",
        "illuminance",
        "irradiance",
        "moisture",
        "monetary",
        "nitrogen_dioxide",
        "nitrogen_monoxide",
        "nitrous_oxide",
        "ozone",
        "ph",
        "pm1",
        "pm10",
        "pm25",
        "power",
        "power_factor",
        "precipitation",
        "precipitation_intensity",
        "pressure",
        "reactive_energy",
        "reactive_power",
        "signal_strength",
        "sound_pressure",
        "speed",
        "sulphur_dioxide",
        "temperature",
        "timestamp",
        "volatile_organic_compounds",
        "volatile_organic_compounds_parts",
        "voltage",
        "volume",
        "volume_flow_rate",
        "volume_storage",
        "water",
        "weight",
        "wind_direction",
        "wind_speed",
    }
)
#: Home Assistant's binary_sensor device classes
BINARY_SENSOR_DEVICE_CLASSES = frozenset(
    {
        "battery",
        "battery_charging",
        "carbon_monoxide",
        "cold",
        "connectivity",
        "door",
        "garage_door",
        "gas",
        "heat",
        "light",
        "lock",
        "moisture",
        "motion",
        "moving",
        "occupancy",
        "opening",
        "plug",
        "power",
        "presence",
        "problem",
        "running",
        "safety",
        "smoke",
        "sound",
        "tamper",
        "update",
        "vibration",
        "window",
    }
)
#: names sensors use for classes Home Assistant spells differently
_ALIASES = {
    "sensor": {
        "co2": "carbon_dioxide",
        "co": "carbon_monoxide",
        "pm2.5": "pm25",
        "pm2_5": "pm25",
        "light": "illuminance",
        "lux": "illuminance",
        "rssi": "signal_strength",
        "tvoc": "volatile_organic_compounds",
        "voc": "volatile_organic_compounds",
        "soil_moisture": "moisture",
        "air_pressure": "atmospheric_pressure",
    },
    "binary_sensor": {"open": "opening", "contact": "opening", "leak": "moisture"},
}
#: every key a discovery config may hold; ``required`` ones are always there
DISCOVERY_KEYS: Mapping[str, frozenset[str]] = {
    "required": frozenset(
        {
            "unique_id",
            "default_entity_id",
            "name",
            "state_topic",
            "value_template",
            "availability_topic",
            "payload_available",
            "payload_not_available",
            "device",
            "origin",
        }
    ),
    "optional": frozenset(
        {"unit_of_measurement", "device_class", "state_class", "suggested_display_precision"}
    ),
    "device": frozenset({"identifiers", "name", "manufacturer", "model", "sw_version"}),
    "origin": frozenset({"name", "sw_version"}),
}
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Device:
    """The ``device`` block every entity of this node shares.

    ``entity_name`` is what the entities' ids are made of: the node's name
    (``[node] name``), so a node called ``shed-1`` has ``sensor.shed_1_…``;
    empty, they are made of the node id. ``unique_id`` is always the node
    id's, so a renamed node keeps its entities (Home Assistant keeps an
    entity's id once it has one)."""

    node_id: str
    name: str
    model: str
    sw_version: str
    entity_name: str = ""

    def block(self) -> dict[str, Any]:
        return {
            "identifiers": [self.node_id],
            "name": self.name,
            "manufacturer": "Lichen",
            "model": self.model,
            "sw_version": self.sw_version,
        }


def object_id(node_id: str, sensor: str, field: str) -> str:
    """``<node>_<sensor>_<field>``, with anything but letters, digits, _ and - as ``_``
    (Home Assistant's rule for the discovery topic's object id)."""
    return _UNSAFE.sub("_", f"{node_id}_{sensor}_{field}")


def default_entity_id(component: str, oid: str) -> str:
    """``<component>.<slug>``: the entity id Home Assistant gives the entity when it
    is first discovered (lowercase letters, digits and single ``_``, as its own
    slugs). Home Assistant 2025.10 replaced the discovery key ``object_id`` with
    this one, and stopped reading ``object_id`` in 2026.4."""
    return f"{component}.{_NOT_SLUG.sub('_', oid.lower()).strip('_') or 'lichen'}"


def _ascii(name: str) -> str:
    """``Gewächshaus`` → ``Gewachshaus``: accents folded as Home Assistant's slugs do;
    "" when nothing of the name is left (a name in another script: the id is used)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return folded if _NOT_SLUG.sub("", folded.lower()) else ""


def component_for(value: object) -> str:
    """``binary_sensor`` for booleans, ``sensor`` for everything else."""
    return "binary_sensor" if isinstance(value, bool) else "sensor"


def device_class_for(component: str, declared: object) -> str | None:
    """The Home Assistant device class for a sensor's declared one, or None where
    Home Assistant has none that fits (it refuses unknown classes)."""
    if not isinstance(declared, str):
        return None
    name = declared.strip().lower()
    name = _ALIASES.get(component, {}).get(name, name)
    valid = BINARY_SENSOR_DEVICE_CLASSES if component == "binary_sensor" else SENSOR_DEVICE_CLASSES
    return name if name in valid else None


def _template(field: str, component: str) -> str:
    ref = f"value_json.{field}" if field.isidentifier() else f"value_json[{field!r}]"
    if component == "binary_sensor":
        return f"{{{{ 'ON' if {ref} else 'OFF' }}}}"
    return f"{{{{ {ref} }}}}"


def _precision(resolution: object) -> int | None:
    if not isinstance(resolution, int | float) or isinstance(resolution, bool) or resolution <= 0:
        return None
    return max(0, -round(math.log10(resolution)))


def discovery_config(
    reading: SensorReading,
    field: str,
    *,
    device: Device,
    state_topic: str,
    availability_topic: str,
) -> tuple[str, dict[str, Any]]:
    """``(component, config)`` of one field of one sensor instance."""
    value = reading.values[field]
    component = component_for(value)
    spec = reading.fields.get(field, {})
    oid = object_id(device.node_id, reading.sensor, field)
    folded = _ascii(device.entity_name)
    named = object_id(folded, reading.sensor, field) if folded else oid
    config: dict[str, Any] = {
        "unique_id": oid,
        "default_entity_id": default_entity_id(component, named),
        "name": f"{reading.sensor} {field}",
        "state_topic": state_topic,
        "value_template": _template(field, component),
        "availability_topic": availability_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device.block(),
        "origin": {"name": "Lichen", "sw_version": device.sw_version},
    }
    device_class = device_class_for(component, spec.get("device_class"))
    if device_class is not None:
        config["device_class"] = device_class
    if component == "sensor" and isinstance(value, int | float):
        config["state_class"] = "measurement"
        unit = spec.get("unit")
        if isinstance(unit, str) and unit:
            config["unit_of_measurement"] = unit
        precision = _precision(spec.get("resolution"))
        if precision is not None:
            config["suggested_display_precision"] = precision
    return component, config


def _json_value(value: bool | int | float | str) -> bool | int | float | str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def state_payload(reading: SensorReading) -> dict[str, Any]:
    """``{"ts": <ms since the epoch>, "<field>": value, …}`` (``ts`` wins a clash)."""
    payload: dict[str, Any] = {k: _json_value(v) for k, v in reading.values.items()}
    payload["ts"] = reading.ts_ms
    return payload


def _encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class HomeAssistant:
    """What this node tells Home Assistant: state per sensor, discovery per field."""

    def __init__(
        self,
        device: Device,
        *,
        availability_topic: str,
        discovery_prefix: str = "homeassistant",
        state_prefix: str = "lichen/state",
    ) -> None:
        self.device = device
        self.availability_topic = availability_topic
        self.discovery_prefix = discovery_prefix
        self.state_prefix = state_prefix
        self._configs: dict[tuple[str, str], Message] = {}
        self._states: dict[str, Message] = {}

    @property
    def status_topic(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.discovery_prefix}/status"

    def state_topic(self, sensor: str) -> str:
        return f"{self.state_prefix}/{self.device.node_id}/{_UNSAFE.sub('_', sensor)}"

    def observe(self, reading: SensorReading) -> list[Message]:
        """The messages ``reading`` calls for: the discovery config of each field
        not seen before, then the sensor's state."""
        out = []
        state_topic = self.state_topic(reading.sensor)
        for field in reading.values:
            key = (reading.sensor, field)
            if key in self._configs:
                continue
            component, config = discovery_config(
                reading,
                field,
                device=self.device,
                state_topic=state_topic,
                availability_topic=self.availability_topic,
            )
            oid = config["unique_id"]
            topic = f"{self.discovery_prefix}/{component}/{oid}/config"
            self._configs[key] = Message(topic, _encode(config), qos=1, retain=True)
            out.append(self._configs[key])
        state = Message(state_topic, _encode(state_payload(reading)), qos=0, retain=False)
        self._states[reading.sensor] = state
        out.append(state)
        return out

    def discovery_messages(self) -> list[Message]:
        """Every discovery config known so far (to republish)."""
        return list(self._configs.values())

    def state_messages(self) -> list[Message]:
        """The latest state of every sensor seen so far."""
        return list(self._states.values())
