"""One connection to an MQTT broker: a paho client in its own thread, bridged to asyncio.

The one MQTT layer of the project: a board's uplink (``lichen_mqtt``) and the
cloud role (:mod:`agent.cloud.mqtt`) both connect through it. A
:class:`BrokerSession` lives for exactly one connection. It is made, it
connects (the blocking TCP and TLS handshake in an executor, then paho's
network loop in paho's thread), it publishes, subscribes and receives, and
once the link drops it is thrown away with everything paho held; the next
connection gets a new one — so a message is only ever acknowledged on the
connection it came on. Reconnecting (with :class:`agent.backoff.Backoff`)
is the caller's loop.

paho calls back from its own thread; every callback is handed to the event
loop with ``loop.call_soon_threadsafe`` and handled there, so the session's
state is only ever touched by the loop. Sessions are persistent (MQTT 5
``clean_start = false`` with a session expiry; 3.1.1 ``clean_session =
false``), and received messages are acknowledged by the caller
(:meth:`BrokerSession.ack`) once handled.

QoS 1 publishes go through a window of ``window`` slots: :meth:`publish`
waits for a free slot, a PUBACK frees it. paho's own queue is sized to the
window as well, so it never holds messages of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .settings import (
    BAD_USER_NAME_OR_PASSWORD,
    NOT_AUTHORIZED,
    UNSUPPORTED_PROTOCOL_VERSION,
    ConnectFailed,
    Incoming,
    Message,
    SessionLost,
    SessionSettings,
    require_paho,
)
from .tls import describe_error

if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["BrokerSession"]


class BrokerSession:
    """One MQTT connection, driven from the event loop."""

    def __init__(self, settings: SessionSettings, *, log: logging.Logger) -> None:
        """Raises :class:`OSError` / :class:`ssl.SSLError` when a TLS file is
        missing or bad (read now, for this connection)."""
        self.config = config = settings
        self.protocol = settings.protocol
        self.log = log
        self.window = config.window
        self.session_present = False
        #: the most QoS 1 publishes this session had awaiting their PUBACK at once
        self.max_in_flight = 0
        self.pubacks = 0
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[str] = self._loop.create_future()
        self._slots = asyncio.Semaphore(config.window)
        self._pending: dict[int, asyncio.Future[ReasonCode] | None] = {}
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self.incoming: asyncio.Queue[Incoming] = asyncio.Queue()
        self._lock = threading.Lock()
        self._paho_log = log.getChild("paho")
        self._abandoned = False
        self._socket_open = False
        self._loop_started = False
        self._client = self._build_client()

    # ------------------------------------------------------------ set-up

    def _build_client(self) -> Client:
        mqtt = require_paho()
        v5 = self.protocol == "5"
        client: Client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.on_log = self._cb_log
        client.max_inflight_messages_set(self.config.window)
        client.max_queued_messages_set(self.config.window)
        client.connect_timeout = self.config.connect_timeout
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password or None)
        context = self.config.tls_context()
        if context is not None:
            client.tls_set_context(context)
        will = self.config.will
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_subscribe = self._cb_subscribe
        client.on_message = self._cb_message
        return client

    def _connect_properties(self) -> Properties | None:
        if self.protocol != "5":
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.config.session_expiry
        if self.config.receive_maximum:
            properties.ReceiveMaximum = self.config.receive_maximum
        return properties

    def _blocking_connect(self) -> None:
        """In an executor: TCP, TLS, CONNECT. Closes the socket again if the
        caller gave up meanwhile."""
        address = self.config.address
        first_only = require_paho().MQTT_CLEAN_START_FIRST_ONLY  # what 3.1.1 must pass
        clean_start: Any = False if self.protocol == "5" else first_only
        self._client.connect(
            address.host,
            address.port,
            keepalive=self.config.keepalive,
            clean_start=clean_start,
            properties=self._connect_properties(),
        )
        with self._lock:
            self._socket_open = True
            abandoned = self._abandoned
        if abandoned:
            self._close_socket()

    async def connect(self) -> None:
        """Connect and wait for the broker's CONNACK; raise :class:`ConnectFailed`."""
        address = self.config.address
        timeout = self.config.connect_timeout
        try:
            async with asyncio.timeout(timeout + 1.0):  # paho bounds TCP and TLS by itself
                await self._loop.run_in_executor(None, self._blocking_connect)
        except BaseException as exc:
            with self._lock:  # the executor may still be connecting: it closes what it opens
                self._abandoned = True
                opened = self._socket_open
            if opened:
                self._close_socket()
            if isinstance(exc, OSError | ValueError):  # refused, unreachable, TLS, timeout
                reason = describe_error(exc)
                raise ConnectFailed(f"cannot connect to {address.url}: {reason}") from None
            raise
        self._client.loop_start()
        self._loop_started = True
        try:
            async with asyncio.timeout(timeout):
                await self._connack
        except TimeoutError:
            await self.close()
            raise ConnectFailed(f"{address.url} sent no CONNACK within {timeout} s") from None
        except BaseException:
            await self.close()
            raise

    def _close_socket(self) -> None:
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    # --------------------------------------------------- paho's thread → loop

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self._loop.call_soon_threadsafe(function, *args)

    def _cb_log(self, _c: Client, _u: Any, _level: int, text: str) -> None:
        # paho's own words, at DEBUG: what matters is reported by the session itself
        # (paho logs ERROR for the normal end of its loop after a disconnect)
        self._paho_log.debug("%s", text)

    def _cb_connect(
        self, _c: Client, _u: Any, flags: ConnectFlags, reason: ReasonCode, props: Properties | None
    ) -> None:
        receive_maximum = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self._call(self._on_connack, flags.session_present, reason, receive_maximum)

    def _cb_disconnect(
        self,
        _c: Client,
        _u: Any,
        flags: DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        from_broker = flags.is_disconnect_packet_from_server
        self._call(self._on_closed, f"the broker disconnected: {reason}" if from_broker else "")

    def _cb_publish(
        self, _c: Client, _u: Any, mid: int, reason: ReasonCode, _props: Properties | None
    ) -> None:
        self._call(self._on_puback, mid, reason)

    def _cb_subscribe(
        self, _c: Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        self._call(self._on_suback, mid, list(reasons))

    def _cb_message(self, _c: Client, _u: Any, message: MQTTMessage) -> None:
        incoming = Incoming(
            message.topic, bytes(message.payload), message.qos, bool(message.retain), message.mid
        )
        self._call(self.incoming.put_nowait, incoming)

    # ------------------------------------------------------- on the loop

    @staticmethod
    def _fail(waiter: asyncio.Future[Any], exc: BaseException) -> None:
        """Fail ``waiter`` without a "never retrieved" warning if nobody awaits it."""
        if not waiter.done():
            waiter.set_exception(exc)
            waiter.exception()

    def _on_connack(self, present: bool, reason: ReasonCode, receive_maximum: int | None) -> None:
        if self._connack.done():
            return
        if reason.is_failure:
            refused = ConnectFailed(
                f"{self.config.address.url} refused the connection: {reason}"
                + self._hint(reason.value),
                unsupported_protocol=reason.value == UNSUPPORTED_PROTOCOL_VERSION,
            )
            self._fail(self._connack, refused)
            return
        self.session_present = bool(present)
        if receive_maximum and receive_maximum < self.window:
            # the broker takes fewer unacknowledged publishes than we would send
            self._slots = asyncio.Semaphore(receive_maximum)
            self.window = receive_maximum
        self._connack.set_result(None)

    def _hint(self, refusal: int | None) -> str:
        """What to check after a refusal (a CONNACK reason code) or, with None, after
        the broker closed the connection before answering."""
        config = self.config
        if refusal in (BAD_USER_NAME_OR_PASSWORD, NOT_AUTHORIZED):
            if config.username:
                return f" (check username {config.username!r} and its password)"
            return " (the broker wants a username and password, or a client certificate)"
        if refusal is not None:
            return ""
        if not config.secure:
            return " (if this is a TLS port, write the broker as mqtts://)"
        if not config.cert_file:
            return f" (the broker may require a client certificate: set {config.cert_keys})"
        return " (the broker may not accept this client certificate)"

    def _on_closed(self, reason: str) -> None:
        reason = reason or "the connection was lost"
        url = self.config.address.url
        hint = self._hint(None) if not self._connack.done() else ""
        self._fail(self._connack, ConnectFailed(f"{url} closed the connection at once{hint}"))
        if not self._closed.done():
            self._closed.set_result(reason)
        for waiter in [*self._pending.values(), *self._subacks.values()]:
            if waiter is not None:
                self._fail(waiter, SessionLost(reason))
        self._subacks.clear()

    def _on_puback(self, mid: int, reason: ReasonCode) -> None:
        if mid not in self._pending:
            return  # a QoS 0 publish went out
        waiter = self._pending.pop(mid)
        self._slots.release()
        self.pubacks += 1
        if reason.is_failure:
            self.log.warning("the broker refused publish %d: %s", mid, reason)
        if waiter is not None and not waiter.done():
            waiter.set_result(reason)

    def _on_suback(self, mid: int, reasons: list[ReasonCode]) -> None:
        waiter = self._subacks.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reasons)

    # ------------------------------------------------------------ use

    @property
    def is_open(self) -> bool:
        return self._connack.done() and not self._closed.done()

    @property
    def in_flight(self) -> int:
        """QoS 1 publishes awaiting their PUBACK."""
        return len(self._pending)

    async def wait_closed(self) -> str:
        """Wait until the connection is gone; return why."""
        return await asyncio.shield(self._closed)

    def _check_open(self) -> None:
        if self._closed.done():
            raise SessionLost(self._closed.result())

    def _error(self, rc: int) -> SessionLost:
        return SessionLost(f"paho: {require_paho().error_string(rc)}")

    async def publish(self, message: Message, *, wait: bool = False) -> None:
        """Publish ``message``. QoS 1 waits for a free window slot first and, with
        ``wait``, for the PUBACK too. Raise :class:`SessionLost` if the link is gone."""
        self._check_open()
        if message.qos == 0:
            info = self._client.publish(message.topic, message.payload, 0, message.retain)
            if info.rc:
                raise self._error(info.rc)
            return
        slots = self._slots
        await slots.acquire()
        try:
            self._check_open()
            info = self._client.publish(message.topic, message.payload, 1, message.retain)
            if info.rc:
                raise self._error(info.rc)
        except BaseException:
            slots.release()
            raise
        waiter = self._loop.create_future() if wait else None
        self._pending[info.mid] = waiter
        self.max_in_flight = max(self.max_in_flight, len(self._pending))
        if waiter is not None:
            await waiter

    async def subscribe(self, topics: list[str]) -> list[str]:
        """Subscribe at QoS 1 and wait for the SUBACK; return the refusals (each
        also logged), ``"TOPIC: REASON"``."""
        self._check_open()
        rc, mid = self._client.subscribe([(topic, 1) for topic in topics])
        if rc or mid is None:
            raise self._error(rc)
        waiter: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = waiter
        reasons = await waiter
        refused = []
        for topic, reason in zip(topics, reasons, strict=False):
            if reason.is_failure:
                self.log.warning("the broker refused the subscription to %s: %s", topic, reason)
                refused.append(f"{topic}: {reason}")
        return refused

    async def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every QoS 1 publish to be PUBACKed; True
        if none is left (or the link is gone)."""
        deadline = self._loop.time() + timeout
        while self._pending and self.is_open and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        return not self._pending or not self.is_open

    def ack(self, message: Incoming) -> None:
        """Acknowledge a delivered message once it has been handled."""
        if message.qos and self.is_open:
            self._client.ack(message.mid, message.qos)

    async def close(self, last_words: Message | None = None, timeout: float = 2.0) -> None:
        """Publish ``last_words`` (waiting up to ``timeout`` for its PUBACK) if the
        link is up, disconnect, and stop paho's thread."""
        if last_words is not None and self.is_open:
            try:
                async with asyncio.timeout(timeout):
                    await self.publish(last_words, wait=True)
            except (TimeoutError, SessionLost):
                pass
        self._client.disconnect()
        if self._loop_started:
            self._loop_started = False
            try:
                async with asyncio.timeout(timeout + 3.0):
                    await asyncio.shield(self._loop.run_in_executor(None, self._client.loop_stop))
            except TimeoutError:
                self.log.warning("paho's network thread did not stop within %.0f s", timeout)
        else:
            self._close_socket()
        self._on_closed("closed by this node")
