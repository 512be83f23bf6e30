"""What a connection to an MQTT broker is made of: its settings, the messages
it sends and receives, and how it fails.

:class:`SessionSettings` says how to reach the broker (address, TLS files,
credentials) and what the session is like (protocol, window, persistence,
last will); :class:`Message` is something to publish, :class:`Incoming`
something the broker delivered; :class:`ConnectFailed` and
:class:`SessionLost` say why there is no connection. :func:`require_paho`
imports paho-mqtt or names the extra that brings it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from types import ModuleType

from ..errors import LichenError
from ..extras import require_module
from ..uplink.broker import BrokerAddress
from .tls import tls_context

__all__ = [
    "BAD_USER_NAME_OR_PASSWORD",
    "NOT_AUTHORIZED",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "ConnectFailed",
    "Incoming",
    "Message",
    "SessionLost",
    "SessionSettings",
    "require_paho",
]

#: the MQTT 5 CONNACK reason code (and paho's reading of the 3.1.1 return code 1)
UNSUPPORTED_PROTOCOL_VERSION = 132
BAD_USER_NAME_OR_PASSWORD = 134
NOT_AUTHORIZED = 135


def require_paho(install: str = "'lichen[mqtt]'", purpose: str = "MQTT") -> ModuleType:
    """paho-mqtt's client module, or :class:`~agent.extras.MissingExtra` saying
    how to install it (``pip install INSTALL``) and for what."""
    return require_module("paho.mqtt.client", install=install, purpose=purpose,
                          package="paho-mqtt")  # fmt: skip


class ConnectFailed(LichenError):
    """A connection attempt failed; ``str()`` says why, for ``lichen status``."""

    def __init__(self, reason: str, *, unsupported_protocol: bool = False) -> None:
        super().__init__(reason)
        self.unsupported_protocol = unsupported_protocol


class SessionLost(LichenError):
    """The connection is gone; whatever was in flight is dropped."""


@dataclass(frozen=True)
class Message:
    """Something to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class SessionSettings:
    """How to reach the broker and what the session is like.

    ``address``: the broker (``mqtts://`` = TLS, or ``tls`` says; with
    ``ca_file``, the client certificate ``cert_file`` / ``key_file``,
    ``tls_insecure``); ``protocol``
    ``"5"`` or ``"3.1.1"``; ``window``: QoS 1 publishes awaiting their PUBACK
    at once; ``receive_maximum``: with MQTT 5, messages the broker may send
    before this client acknowledges them (None: the broker's default);
    ``will``: the last will; ``cert_keys``: how the configuration names the
    client certificate, for hints after a refusal."""

    address: BrokerAddress
    client_id: str
    protocol: str = "5"
    keepalive: int = 60
    session_expiry: int = 86400
    connect_timeout: float = 10.0
    window: int = 20
    receive_maximum: int | None = None
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    tls: bool | None = None
    will: Message | None = None
    cert_keys: str = "cert_file and key_file"

    @property
    def secure(self) -> bool:
        """Whether to use TLS: ``tls``, or (None) as the address says."""
        return self.address.tls if self.tls is None else self.tls

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context (its files read now), or None without TLS."""
        if not self.secure:
            return None
        return tls_context(self.ca_file, self.cert_file, self.key_file, insecure=self.tls_insecure)


@dataclass(frozen=True)
class Incoming:
    """A message the broker delivered; ``mid``/``qos`` are for :meth:`BrokerSession.ack`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
