"""lichen_mqtt: the MQTT uplink — signed entries to a broker, the cloud's acks back.

::

    [[uplinks.mqtt]]
    name = "cloud"
    broker = "mqtts://broker.example.net:8883"

The modules:

=================  ==========================================================
``config``         :class:`MqttConfig` (the ``[[uplinks.mqtt]]`` table) and
                   ``mqtt://`` / ``mqtts://`` broker addresses
``reconnect``      :class:`ReconnectSchedule`: jittered exponential delays
``session``        :class:`BrokerSession`: one connection, a paho-mqtt client
                   in its own thread bridged to asyncio, with the publish
                   window
``tls``            the client's TLS context; reasons for failed handshakes
``homeassistant``  :class:`HomeAssistant`: JSON state and MQTT discovery
``uplink``         :class:`MqttUplink`, the plugin
=================  ==========================================================

The wire format (topics, batches) is :mod:`agent.uplink.wire`; paho-mqtt is
imported only when a connection is made (``pip install 'lichen[mqtt]'``).
"""

from .config import BrokerAddress, MqttConfig, parse_broker
from .homeassistant import DISCOVERY_KEYS, Device, HomeAssistant
from .reconnect import ReconnectSchedule
from .session import BrokerSession, ConnectFailed, Message, SessionLost
from .tls import tls_context
from .uplink import MqttUplink, UplinkStats

__all__ = [
    "DISCOVERY_KEYS",
    "BrokerAddress",
    "BrokerSession",
    "ConnectFailed",
    "Device",
    "HomeAssistant",
    "Message",
    "MqttConfig",
    "MqttUplink",
    "ReconnectSchedule",
    "SessionLost",
    "UplinkStats",
    "parse_broker",
    "tls_context",
]
