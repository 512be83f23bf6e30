"""The cloud role's broker link: the shared MQTT layer, kept connected and subscribed.

Every connection is an :class:`agent.mqtt.BrokerSession` (the same paho bridge
and TLS set-up as a board's uplink), MQTT 5, QoS 1:

* **shared subscription** ``$share/<group>/<prefix>/+/+/up``: the broker
  spreads the boards' batches over every worker of the group;
* **persistent session**: ``clean_start=False``, a session expiry interval and
  a stable client id, so what arrives while a worker is away waits for it;
  *Receive Maximum* ``max_inflight`` bounds what the broker sends unacknowledged;
* **manual acknowledgements**: a batch is PUBACKed only after the ingestor
  stored it durably — at-least-once into the sink, exactly once by its key.
  A message received on an earlier connection is never acknowledged on a
  later one (its packet id may have been reused): the broker redelivers it.

Reconnection is this loop's, with :class:`agent.backoff.Backoff` (jittered,
1 s to 120 s); the role starts even with the broker down and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..aio import cancel_and_wait, wait_event
from ..backoff import Backoff
from ..errors import ConfigError
from ..logs import event
from ..mqtt import (
    BrokerSession,
    ConnectFailed,
    Incoming,
    SessionLost,
    SessionSettings,
    describe_error,
)
from ..mqtt import Message as Outgoing

if TYPE_CHECKING:
    from ..config.cloud import CloudConfig

__all__ = ["Message", "MqttLink", "session_settings"]

log = logging.getLogger("lichen.cloud.mqtt")

BACKOFF_FIRST_S = 1.0
BACKOFF_LIMIT_S = 120.0
#: acknowledgements (QoS 1, retained) awaiting their PUBACK at once, at least
MIN_PUBLISH_WINDOW = 20


@dataclass(frozen=True, slots=True)
class Message:
    """One received PUBLISH. ``generation`` numbers the connection it came on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


def session_settings(cloud: CloudConfig, client_id: str) -> SessionSettings:
    """The settings of each of the role's connections (:class:`agent.mqtt.BrokerSession`)
    from its ``[cloud]`` table: MQTT 5, a persistent session, ``max_inflight``
    unacknowledged messages from the broker."""
    return SessionSettings(
        address=cloud.broker_url, client_id=client_id, protocol="5",
        keepalive=cloud.keepalive, session_expiry=cloud.session_expiry,
        window=max(MIN_PUBLISH_WINDOW, cloud.max_inflight),
        receive_maximum=cloud.max_inflight, username=cloud.username,
        password=cloud.password, ca_file=cloud.tls_ca, cert_file=cloud.tls_cert,
        key_file=cloud.tls_key, cert_keys="[cloud] tls_cert and tls_key",
    )  # fmt: skip


class MqttLink:
    """The cloud's connection to the broker, kept up until :meth:`close`."""

    def __init__(
        self, settings: SessionSettings, subscription: str, deliver: Callable[[Message], None]
    ) -> None:
        self.settings = settings
        self.subscription = subscription
        self.deliver = deliver
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self.session_present: bool | None = None
        self._generation = 0
        self._backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_LIMIT_S)
        self._session: BrokerSession | None = None
        try:  # TLS files are read (and refused) now, not at the first connection
            self.settings.tls_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"cannot set up TLS: {exc}",
                key="[cloud] tls_ca / tls_cert / tls_key",
                fix="point them at readable PEM files (tls_ca may stay empty)",
            ) from None

    # ----------------------------------------------------------- connecting

    async def _open(self) -> BrokerSession | None:
        """A connected, subscribed session; or None, with ``last_error`` saying why."""
        try:
            session = BrokerSession(self.settings, log=log)
        except (OSError, ssl.SSLError) as exc:  # a TLS file vanished or went bad
            self.last_error = f"TLS set-up failed: {describe_error(exc)}"
            return None
        try:
            await session.connect()
            refused = await session.subscribe([self.subscription])
        except ConnectFailed as exc:
            self.last_error = str(exc)
            return None
        except SessionLost as exc:
            self.last_error = f"disconnected: {exc}"
            await session.close()
            return None
        if refused:
            self._failed(f"subscription refused: {'; '.join(refused)}")
        self._up(session)
        return session

    def _up(self, session: BrokerSession) -> None:
        self._session = session
        self.connected = True
        self.connects += 1
        self.session_present = session.session_present
        self._backoff.reset()
        event(
            log,
            "broker connected",
            broker=str(self.settings.address),
            client_id=self.settings.client_id,
            subscription=self.subscription,
            session_present=session.session_present,
        )

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        event(
            log, "broker problem", logging.ERROR, broker=str(self.settings.address), reason=reason
        )

    def _lost(self, reason: str) -> None:
        if self.connected:
            self.disconnects += 1
        self.connected = False
        self.last_error = f"disconnected: {reason}"

    async def _pump(self, session: BrokerSession, generation: int) -> None:
        """Hand every message of this connection to ``deliver``."""
        while True:
            item = await session.incoming.get()
            self.deliver(Message(item.topic, item.payload, item.mid, item.qos, generation))

    async def _serve(self, session: BrokerSession, stop: asyncio.Event) -> None:
        """Until the connection drops (then it is closed) or ``stop`` is set
        (then :meth:`close` closes it)."""
        pump = asyncio.create_task(self._pump(session, self._generation))
        lost = asyncio.ensure_future(session.wait_closed())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({pump, lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
            reason = lost.result() if lost.done() else "the connection was lost"
        finally:
            await cancel_and_wait((pump, lost, stopped))
        if stop.is_set():
            return
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            reason = f"delivering failed: {pump.exception()!r}"
        self._session = None
        self._lost(reason)
        await session.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set (then call :meth:`close`)."""
        while not stop.is_set():
            self._generation += 1
            session = await self._open()
            if session is not None:
                await self._serve(session, stop)
                if stop.is_set():
                    return
            delay = self._backoff.next()
            event(
                log,
                "broker unreachable; retrying",
                logging.WARNING,
                broker=str(self.settings.address),
                reason=self.last_error,
                retry_in_s=round(delay, 1),
            )
            await wait_event(stop, delay)

    # ------------------------------------------------------------- using

    def ack(self, message: Message) -> bool:
        """PUBACK ``message`` (only on the connection it came on)."""
        session = self._session
        if session is None or not session.is_open or message.generation != self._generation:
            return False
        session.ack(Incoming(message.topic, message.payload, message.qos, False, message.mid))
        return True

    async def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> bool:
        """Publish QoS 1 (waiting for a slot of the window); False when not
        connected (the caller keeps it for later)."""
        session = self._session
        if session is None or not session.is_open:
            return False
        try:
            await session.publish(Outgoing(topic, payload, qos=1, retain=retain))
        except SessionLost:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Let the last publications be acknowledged (up to ``timeout``), send
        DISCONNECT (the session stays for ``session_expiry``) and stop."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(SessionLost):
                await session.flush(timeout)
            await session.close(timeout=timeout)
        self.connected = False
