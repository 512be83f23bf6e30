"""lichen_mqtt: the MQTT uplink — signed entries to a broker, the cloud's acks back.

::

    [[uplinks.mqtt]]
    name = "cloud"
    broker = "mqtts://broker.example.net:8883"

The modules:

=================  ==========================================================
``config``         :class:`MqttConfig` (the ``[[uplinks.mqtt]]`` table) and
                   ``mqtt://`` / ``mqtts://`` broker addresses
``reconnect``      :class:`ReconnectSchedule`: the jittered reconnection
                   delays (:class:`agent.backoff.Backoff`, full jitter)
``homeassistant``  :class:`HomeAssistant`: JSON state and MQTT discovery
``uplink``         :class:`MqttUplink`, the plugin
=================  ==========================================================

The connection itself — a paho-mqtt client in its own thread bridged to
asyncio, the publish window, TLS — is the core's MQTT layer, :mod:`agent.mqtt`,
shared with the cloud role. The wire format (topics, batches) is
:mod:`agent.uplink.wire`; paho-mqtt is imported only when a connection is made
(``pip install 'lichen[mqtt]'``).
"""

from .config import BrokerAddress, MqttConfig, parse_broker
from .homeassistant import DISCOVERY_KEYS, Device, HomeAssistant
from .reconnect import ReconnectSchedule
from .uplink import MqttUplink, UplinkStats

__all__ = [
    "DISCOVERY_KEYS",
    "BrokerAddress",
    "Device",
    "HomeAssistant",
    "MqttConfig",
    "MqttUplink",
    "ReconnectSchedule",
    "UplinkStats",
    "parse_broker",
]
