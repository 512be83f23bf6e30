"""The MQTT uplink: the outbox to the broker, the cloud's acknowledgements back.

``run()`` is one loop: connect (MQTT 5, or 3.1.1 where the broker refuses 5),
serve the connection until it drops, wait a jittered delay, connect again —
forever, until cancelled. Serving a connection means:

* subscribe (QoS 1) to the node's ``ack`` topic (and Home Assistant's status
  topic), publish ``online`` (retained) on the ``status`` topic, whose last
  will is ``offline``;
* a **fresh outbox pass**: every batch ``context.outbox(max_payload)`` yields
  is published on ``up`` at QoS 1, never more than ``window`` awaiting their
  PUBACK at once;
* every ack payload is decoded and its entries handed to
  ``context.receive``; the message is acknowledged to the broker after that;
* with ``homeassistant = true``, discovery configs and the latest states.

Delivery state never lives here: a PUBACK only frees a window slot. An entry
is done when the cloud's signed acknowledgement comes back, by this link or
any other; until then the log's outbox hands it out again — in the next
pass after a reconnect, or after ``[uplink] resend_after`` seconds within a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import AddressError
from agent.mqtt import BrokerSession, ConnectFailed, Incoming, Message, SessionLost
from agent.plugin_api import LinkAddress, Uplink, UplinkConfig, UplinkContext, cancel_and_wait
from agent.uplink.wire import (
    BROKER_PORTS,
    BatchError,
    Topics,
    decode_entry_batch,
    encode_entry_batch,
    parse_broker,
)

from .config import MqttConfig, require_paho
from .homeassistant import Device, HomeAssistant
from .reconnect import ReconnectSchedule

__all__ = ["MqttUplink", "UplinkStats"]

#: a connection that held this long resets the reconnection delays (seconds)
STABLE_AFTER_S = 10.0


@dataclass
class UplinkStats:
    """Counters of one uplink instance (for ``lichen status`` and tests)."""

    connects: int = 0
    passes: int = 0
    batches: int = 0
    entries: int = 0
    bytes: int = 0
    pubacks: int = 0
    max_in_flight: int = 0
    acks_received: int = 0
    acks_stored: int = 0
    malformed_acks: int = 0
    protocol: str = ""
    last_error: str = ""
    connected_at: float = 0.0  # time.monotonic() when the last connection was ready


def _lichen_version() -> str:
    try:
        from importlib.metadata import version

        return version("lichen")
    except Exception:
        return "unknown"


class MqttUplink(Uplink):
    """Forwards the outbox to an MQTT broker and hands the cloud's acks back."""

    Config = MqttConfig
    schemes = tuple(BROKER_PORTS)

    @classmethod
    def parse_address(cls, address: str) -> LinkAddress:
        """A broker address (:func:`~agent.uplink.wire.parse_broker`, the one parser
        of ``broker``, ``lichen run --uplink`` and the cloud's broker)."""
        try:
            broker = parse_broker(address)
        except ValueError as exc:
            raise AddressError(
                address, str(exc), "write mqtt://HOST:PORT or mqtts://HOST:PORT "
                "(1883 / 8883 when the port is left out)",
            ) from None  # fmt: skip
        return LinkAddress(broker.scheme, broker.host, broker.port)

    @classmethod
    def config_for(cls, name: str | None, address: LinkAddress, base: Any = None) -> MqttConfig:
        """``lichen run --uplink``: ``base`` (the first ``[[uplinks.mqtt]]`` table)
        with this broker, or the defaults (named ``cloud``)."""
        name = name or "cloud"
        if isinstance(base, MqttConfig):
            return dataclasses.replace(base, name=name, broker=address.url)
        return MqttConfig(name=name, broker=address.url)

    @classmethod
    def requires(cls, config: UplinkConfig) -> Mapping[str, str]:
        return {"paho.mqtt.client": "lichen[mqtt]"}

    def __init__(self, config: MqttConfig, context: UplinkContext) -> None:
        super().__init__(config, context)
        require_paho()  # a missing paho-mqtt is a clear error at start, not at each connect
        self.config: MqttConfig = config
        self.topics: Topics = config.topics(context.node_id)
        self.schedule = ReconnectSchedule(config.reconnect_min, config.reconnect_max)
        self.stats = UplinkStats()
        self._protocol = "3.1.1" if config.protocol == "3.1.1" else "5"
        self._session: BrokerSession | None = None
        self.home_assistant: HomeAssistant | None = None
        if config.homeassistant:
            node = context.node_id
            named = context.node_name or config.device_name
            device = Device(
                node_id=node,
                name=config.device_name or context.node_name or f"Lichen {node[:11]}",
                model=config.device_model,
                sw_version=_lichen_version(),
                entity_name=named,
            )
            self.home_assistant = HomeAssistant(
                device,
                availability_topic=self.topics.status,
                discovery_prefix=config.discovery_prefix,
                state_prefix=config.state_prefix,
            )

    @property
    def log(self) -> logging.Logger:
        return self.context.log

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.is_open

    @property
    def in_flight(self) -> int:
        """Publishes of this connection awaiting their PUBACK (0 while down)."""
        return self._session.in_flight if self._session is not None else 0

    def _status(self, text: str) -> Message:
        return Message(self.topics.status, text.encode(), qos=1, retain=True)

    # ------------------------------------------------------------- the loop

    async def run(self) -> None:
        follower = None
        if self.home_assistant is not None:
            follower = asyncio.create_task(self._follow_readings(self.home_assistant))
        try:
            while True:
                session = await self._connect()
                if session is None:
                    await asyncio.sleep(self.schedule.next())
                    continue
                started = time.monotonic()
                try:
                    reason = await self._serve(session)
                except BaseException:
                    self._session = None
                    await session.close(last_words=self._status("offline"))
                    raise
                self._session = None
                await session.close()
                self._link_down(f"connection lost: {reason}")
                if time.monotonic() - started >= min(STABLE_AFTER_S, self.config.reconnect_max):
                    self.schedule.reset()
                await asyncio.sleep(self.schedule.next())
        finally:
            if follower is not None:
                await cancel_and_wait((follower,))
            self.context.set_connected(False, "stopped")

    def _link_down(self, reason: str) -> None:
        if reason != self.stats.last_error:
            self.log.warning("mqtt uplink %s: %s", self.config.name, reason)
        else:
            self.log.info("mqtt uplink %s: still down: %s", self.config.name, reason)
        self.stats.last_error = reason
        self.context.set_connected(False, reason)

    async def _connect(self) -> BrokerSession | None:
        """A connected session, or None after reporting why there is none."""
        while True:
            try:
                client_id = self.config.effective_client_id(self.context.node_id)
                settings = self.config.session_settings(
                    client_id, self._protocol, self._status("offline")
                )
                session = BrokerSession(settings, log=self.log)
            except (OSError, ssl.SSLError) as exc:  # a TLS file vanished or went bad
                self._link_down(f"TLS set-up failed: {exc}")
                return None
            try:
                await session.connect()
            except ConnectFailed as exc:
                auto = self.config.protocol == "auto"
                if exc.unsupported_protocol and auto and self._protocol == "5":
                    self.log.info("%s: falling back to MQTT 3.1.1", exc)
                    self._protocol = "3.1.1"
                    continue
                self._link_down(str(exc))
                return None
            self.stats.connects += 1
            self.stats.protocol = self._protocol
            return session

    async def _serve(self, session: BrokerSession) -> str:
        """Run one connection until it drops; return why it dropped."""
        try:
            filters = [self.topics.ack]
            if self.home_assistant is not None:
                filters.append(self.home_assistant.status_topic)
            await session.subscribe(filters)
            await session.publish(self._status("online"))
        except SessionLost as exc:
            return str(exc)
        self._session = session
        self.stats.last_error = ""
        url = self.config.address.url
        resumed = "resumed" if session.session_present else "new"
        self.log.info("mqtt uplink %s: connected to %s (MQTT %s, session %s)",
                      self.config.name, url, self._protocol, resumed)  # fmt: skip
        self.context.set_connected(True, url)
        self.stats.connected_at = time.monotonic()
        tasks = {
            asyncio.create_task(self._pump(session)),
            asyncio.create_task(self._dispatch(session)),
        }
        if self.home_assistant is not None:
            tasks.add(asyncio.create_task(self._announce(session, self.home_assistant)))
        lost = asyncio.ensure_future(session.wait_closed())
        try:
            while True:
                done, _ = await asyncio.wait({lost, *tasks}, return_when=asyncio.FIRST_COMPLETED)
                if lost in done:
                    return lost.result()
                for task in done:
                    tasks.discard(task)
                    error = task.exception()
                    if isinstance(error, SessionLost):
                        return str(error)
                    if error is not None:
                        raise error
        finally:
            await cancel_and_wait((lost, *tasks))
            self.stats.pubacks += session.pubacks
            self.stats.max_in_flight = max(self.stats.max_in_flight, session.max_in_flight)

    # ------------------------------------------------------ the outbox pass

    async def _pump(self, session: BrokerSession) -> None:
        """One fresh outbox pass, published within the window."""
        self.stats.passes += 1
        outbox = self.context.outbox(self.config.max_payload)
        try:
            async for batch in outbox:
                if not batch:
                    continue
                payload = encode_entry_batch(batch)  # an outbox batch carries it ready-made
                if len(payload) > self.config.max_payload:
                    self.log.error("the outbox gave a %d-byte batch; the limit is %d: skipped",
                                   len(payload), self.config.max_payload)  # fmt: skip
                    continue
                await session.publish(Message(self.topics.up, payload, qos=1))
                self.stats.batches += 1
                self.stats.entries += len(batch)
                self.stats.bytes += len(payload)
        finally:
            close = getattr(outbox, "aclose", None)
            if close is not None:
                with contextlib.suppress(RuntimeError):
                    await close()

    # ------------------------------------------------------ what comes back

    async def _dispatch(self, session: BrokerSession) -> None:
        while True:
            message = await session.incoming.get()
            if message.topic == self.topics.ack:
                await self._take_acks(message)
            elif self.home_assistant is not None and (
                message.topic == self.home_assistant.status_topic
                and message.payload.strip().lower() == b"online"
            ):
                self.log.info("Home Assistant is online: republishing discovery")
                await self._announce(session, self.home_assistant)
            session.ack(message)

    async def _take_acks(self, message: Incoming) -> None:
        if not message.payload:
            return  # an empty retained message: the retained ack was cleared
        try:
            entries = decode_entry_batch(message.payload, self.config.max_payload)
        except BatchError as exc:
            self.stats.malformed_acks += 1
            self.log.warning("malformed ack payload on %s (%d bytes), ignored: %s",
                             message.topic, len(message.payload), exc)  # fmt: skip
            return
        self.stats.acks_received += len(entries)
        if entries:
            self.stats.acks_stored += await self.context.receive(entries)

    # ------------------------------------------------------- Home Assistant

    async def _announce(self, session: BrokerSession, ha: HomeAssistant) -> None:
        """Every discovery config (retained) and the latest states."""
        for message in [*ha.discovery_messages(), *ha.state_messages()]:
            await session.publish(message)

    async def _follow_readings(self, ha: HomeAssistant) -> None:
        async for reading in self.context.readings():
            messages = ha.observe(reading)
            session = self._session
            if session is None or not session.is_open:
                continue  # kept: the next connection announces the latest
            try:
                for message in messages:
                    await session.publish(message)
            except SessionLost:
                continue
