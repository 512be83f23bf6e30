"""The ``[[uplinks.mqtt]]`` table, and ``mqtt://`` / ``mqtts://`` broker addresses."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from agent.errors import ConfigError
from agent.mqtt import Message, SessionSettings
from agent.mqtt import require_paho as require_paho_for
from agent.plugin_api import UplinkConfig, readable_file, setting
from agent.uplink.wire import (
    DEFAULT_PREFIX,
    MAX_PAYLOAD,
    BrokerAddress,
    Topics,
    check_client_id,
    check_topic_level,
    check_topic_prefix,
    parse_broker,
)

__all__ = [
    "BrokerAddress",
    "MqttConfig",
    "Protocol",
    "parse_broker",
    "require_paho",
]

Protocol = Literal["auto", "5", "3.1.1"]


def require_paho() -> ModuleType:
    """paho-mqtt's client module, or a :class:`~agent.plugin_api.MissingExtra`
    saying how to install it."""
    return require_paho_for("'lichen[mqtt]'", "the mqtt uplink")


def _tls_file(what: str, example: str) -> Any:
    return setting(
        "",
        check=readable_file,
        help=f'{what}, e.g. {example}; "" = none (see lichen cloud-cert)',
    )


@dataclass(frozen=True, kw_only=True)
class MqttConfig(UplinkConfig):
    """One ``[[uplinks.mqtt]]`` table; ``sample.toml`` shows every key."""

    broker: str = setting(
        check=parse_broker,
        help='the broker, e.g. broker = "mqtt://192.168.1.5:1883" or '
        '"mqtts://broker.example.net:8883"',
    )
    fleet: str = setting(
        "default", check=check_topic_level, help='the fleet\'s topic level, e.g. fleet = "farm"'
    )
    topic_prefix: str = setting(
        DEFAULT_PREFIX, check=check_topic_prefix, help=f'topic_prefix = "{DEFAULT_PREFIX}"'
    )
    client_id: str = setting(
        "",
        check=check_client_id,
        help='the MQTT client id; "" = lichen-<node id>-<name>, stable across restarts',
    )
    username: str = setting("", help='the broker user; "" = anonymous')
    password: str = setting("", help="the broker user's password")
    ca_file: str = _tls_file("PEM file of the CA that signed the broker", '"/etc/lichen/ca.pem"')
    cert_file: str = _tls_file("PEM client certificate", '"/etc/lichen/client.pem"')
    key_file: str = _tls_file("PEM private key of cert_file", '"/etc/lichen/client.key"')
    tls_insecure: bool = setting(
        False,
        help="true: do not check that the broker's certificate names its host "
        "(the chain is still checked); for tests only",
    )
    keepalive: int = setting(
        60, min=5, max=65535, help="keepalive = 60: seconds between MQTT pings, 5 or more"
    )
    protocol: Protocol = setting(
        "auto", help='protocol = "auto" (5, then 3.1.1 if refused), "5" or "3.1.1"'
    )
    window: int = setting(
        20,
        min=1,
        max=100,
        help="window = 20: batches awaiting the broker's PUBACK at once, 1 to 100",
    )
    max_payload: int = setting(
        MAX_PAYLOAD,
        min=1024,
        max=MAX_PAYLOAD,
        help=f"max_payload = {MAX_PAYLOAD}: the largest batch in bytes, 1024 or more",
    )
    session_expiry: int = setting(
        86400,
        min=0,
        max=4294967295,
        help="session_expiry = 86400: seconds the broker keeps this node's session "
        "while it is away; 0 = none",
    )
    reconnect_min: float = setting(
        1.0,
        min=0.05,
        max=3600.0,
        help="reconnect_min = 1.0: seconds, the shortest reconnection delay",
    )
    reconnect_max: float = setting(
        120.0,
        min=0.05,
        max=86400.0,
        help="reconnect_max = 120.0: seconds, the longest reconnection delay",
    )
    connect_timeout: float = setting(
        10.0,
        min=0.1,
        max=300.0,
        help="connect_timeout = 10.0: seconds a connection attempt may take",
    )
    homeassistant: bool = setting(
        False, help="publish plain JSON state and Home Assistant discovery"
    )
    discovery_prefix: str = setting(
        "homeassistant", check=check_topic_prefix, help='Home Assistant\'s, e.g. "homeassistant"'
    )
    state_prefix: str = setting(
        "lichen/state", check=check_topic_prefix, help='where JSON state goes, e.g. "lichen/state"'
    )
    device_name: str = setting(
        "",
        help='the device name Home Assistant shows; "" = the node\'s name ([node] name), '
        "or Lichen <short node id> when it has none",
    )
    device_model: str = setting(
        "Lichen edge agent",
        help='the device model Home Assistant shows, e.g. "Raspberry Pi Zero 2 W"',
    )

    def __post_init__(self) -> None:
        if self.reconnect_max < self.reconnect_min:
            self._error(
                "reconnect_max",
                self.reconnect_max,
                f"is below reconnect_min ({self.reconnect_min})",
                f"reconnect_max = {max(self.reconnect_min, 120.0)}",
            )
        if self.key_file and not self.cert_file:
            self._error(
                "key_file",
                self.key_file,
                "is set without cert_file",
                'set cert_file to the client certificate too, or key_file = ""',
            )
        if self.password and not self.username:
            self._error("password", "…", "is set without username", "set username too")
        require_paho()  # a missing extra stops the start, naming it
        if self.password and not self.tls:
            logging.getLogger("lichen.uplink.mqtt").warning(
                "[[uplinks.mqtt]] %r: the broker password is sent in the clear over %s; anyone "
                "on the network path can read it. Fix: use an mqtts:// broker (TLS; see "
                "lichen cloud-cert)",
                self.name,
                self.broker,
            )

    def _error(self, key: str, value: object, problem: str, fix: str) -> None:
        raise ConfigError(problem, key=key, value=value, fix=fix)

    @property
    def address(self) -> BrokerAddress:
        return parse_broker(self.broker)

    @property
    def tls(self) -> bool:
        """TLS is on for ``mqtts://`` and whenever a TLS file is given."""
        return self.address.tls or bool(self.ca_file or self.cert_file or self.key_file)

    def session_settings(self, client_id: str, protocol: str, will: Message) -> SessionSettings:
        """What :class:`agent.mqtt.BrokerSession` needs for one connection."""
        return SessionSettings(
            address=self.address, client_id=client_id, protocol=protocol,
            keepalive=self.keepalive, session_expiry=self.session_expiry,
            connect_timeout=self.connect_timeout, window=self.window,
            username=self.username, password=self.password, ca_file=self.ca_file,
            cert_file=self.cert_file, key_file=self.key_file, tls_insecure=self.tls_insecure,
            tls=self.tls, will=will,
        )  # fmt: skip

    def topics(self, node_id: str) -> Topics:
        return Topics(self.fleet, node_id, self.topic_prefix)

    def effective_client_id(self, node_id: str) -> str:
        return self.client_id or f"lichen-{node_id}-{self.name}"
