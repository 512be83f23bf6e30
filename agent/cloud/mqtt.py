"""The thin paho-mqtt shell of the cloud role: connect, subscribe, hand over, ack.

paho-mqtt 2.x, callback API version 2, MQTT 5, QoS 1:

* **shared subscription** ``$share/<group>/<prefix>/+/+/up``: the broker
  spreads the boards' batches over every worker of the group;
* **persistent session**: ``clean_start=False``, a session expiry interval and
  a stable client id, so what arrives while a worker is away waits for it;
* **manual acknowledgements**: a batch is PUBACKed only after the ingestor
  stored it durably — at-least-once into the sink, exactly once by its key.
  A message received on an earlier connection is never acknowledged on a
  later one (its packet id may have been reused): the broker redelivers it.

paho's network thread runs while connected; messages are handed to the event
loop with ``call_soon_threadsafe``. Reconnection is ours, with jittered
exponential backoff from 1 s to 120 s; the role starts even with the broker
down and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..errors import ConfigError
from ..runtime.logs import event
from ..transport._backoff import Backoff
from ..uplink.wire import BrokerAddress

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

__all__ = ["BrokerSettings", "Message", "MqttLink"]

log = logging.getLogger("lichen.cloud.mqtt")

BACKOFF_FIRST_S = 1.0
BACKOFF_LIMIT_S = 120.0


@dataclass(frozen=True, slots=True)
class Message:
    """One received PUBLISH. ``generation`` numbers the connection it came on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    dup: bool = False


@dataclass(frozen=True)
class BrokerSettings:
    url: BrokerAddress
    client_id: str
    subscription: str
    keepalive: int = 60
    session_expiry: int = 86400
    max_inflight: int = 64
    username: str = ""
    password: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""


class MqttLink:
    """One MQTT connection, kept up until :meth:`close`."""

    def __init__(self, settings: BrokerSettings, deliver: Callable[[Message], None]) -> None:
        self.settings = settings
        self.deliver = deliver
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self.session_present: bool | None = None
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down = asyncio.Event()
        self._backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_LIMIT_S)
        self._client: mqtt.Client | None = None
        self._closing = False
        self._unconfirmed: list[mqtt.MQTTMessageInfo] = []
        self._client = self._make_client()  # TLS files are read (and refused) here

    # ----------------------------------------------------------------- paho

    def _make_client(self) -> mqtt.Client:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.manual_ack_set(True)
        client.max_inflight_messages_set(max(20, s.max_inflight))
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.url.tls:
            try:
                client.tls_set(
                    ca_certs=s.tls_ca or None,
                    certfile=s.tls_cert or None,
                    keyfile=s.tls_key or None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(
                    f"cannot set up TLS: {exc}",
                    key="[cloud] tls_ca / tls_cert / tls_key",
                    fix="point them at readable PEM files (tls_ca may stay empty)",
                ) from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_blocking(self) -> None:
        """TCP (and TLS) connect and send CONNECT; runs in a worker thread."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        assert self._client is not None
        s = self.settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = s.session_expiry
        properties.ReceiveMaximum = s.max_inflight
        self._client.connect(
            s.url.host, s.url.port, s.keepalive, clean_start=False, properties=properties
        )

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are gone
                loop.call_soon_threadsafe(function, *args)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self._call(self._failed, f"broker refused the connection: {reason}")
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client.subscribe(self.settings.subscription, options=SubscribeOptions(qos=1))
        self._call(self._up, bool(flags.session_present))

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                self._call(self._failed, f"subscription refused: {reason}")

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._call(self._lost, str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        message = Message(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, bool(msg.dup)
        )
        self._call(self.deliver, message)

    # ------------------------------------------------- in the event loop

    def _up(self, session_present: bool) -> None:
        self.connected = True
        self.connects += 1
        self.session_present = session_present
        self._backoff.reset()
        event(
            log,
            "broker connected",
            broker=str(self.settings.url),
            client_id=self.settings.client_id,
            subscription=self.settings.subscription,
            session_present=session_present,
        )

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        event(log, "broker problem", logging.ERROR, broker=str(self.settings.url), reason=reason)

    def _lost(self, reason: str) -> None:
        if self.connected:
            self.disconnects += 1
        self.connected = False
        if not self._closing:
            self.last_error = f"disconnected: {reason}"
        self._down.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set (then call :meth:`close`)."""
        self._loop = asyncio.get_running_loop()
        assert self._client is not None
        while not stop.is_set():
            self._down = asyncio.Event()
            self._generation += 1
            try:
                await asyncio.to_thread(self._connect_blocking)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.last_error = f"cannot connect: {exc}"
            else:
                self._client.loop_start()
                stopped = asyncio.ensure_future(stop.wait())
                down = asyncio.ensure_future(self._down.wait())
                await asyncio.wait({stopped, down}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                down.cancel()
                if stop.is_set():
                    return
                await asyncio.to_thread(self._client.loop_stop)
            delay = self._backoff.next()
            event(
                log,
                "broker unreachable; retrying",
                logging.WARNING,
                broker=str(self.settings.url),
                reason=self.last_error,
                retry_in_s=round(delay, 1),
            )
            await wait_event(stop, delay)

    def ack(self, message: Message) -> bool:
        """PUBACK ``message`` (only on the connection it came on)."""
        client = self._client
        if client is None or not self.connected or message.generation != self._generation:
            return False
        return bool(client.ack(message.mid, message.qos) == 0)

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> bool:
        """Publish QoS 1; False when not connected (the caller keeps it for later)."""
        client = self._client
        if client is None or not self.connected:
            return False
        info = client.publish(topic, payload, qos=1, retain=retain)
        self._unconfirmed = [i for i in self._unconfirmed if not i.is_published()]
        self._unconfirmed.append(info)
        return bool(info.rc == 0)

    async def close(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT (the session stays for ``session_expiry``) and stop."""
        client = self._client
        if client is None:
            return
        self._closing = True
        if self.connected:
            # give our last publications a moment to be acknowledged by the broker
            deadline = asyncio.get_running_loop().time() + timeout
            while (
                any(not i.is_published() for i in self._unconfirmed)
                and self.connected
                and asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.02)
            client.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(client.loop_stop), timeout)
        self.connected = False
