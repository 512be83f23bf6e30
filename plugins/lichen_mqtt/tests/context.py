"""A "cloud" for the uplink's tests: a paho client that reads the ``up`` topic,
verifies every entry and acknowledges it in the uplink's context (agent.testing's
:class:`~agent.testing.FakeUplinkContext`); retained messages as a newcomer sees them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agent.entry import decode_entry, verify_entry
from agent.testing import FakeUplinkContext, wait_until
from agent.uplink.wire import decode_entry_batch

__all__ = ["CloudSubscriber", "Received", "retained", "subscribed"]

Key = tuple[bytes, int]


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class CloudSubscriber:
    """A paho client on the broker: records what arrives on ``topics`` and, for
    batches on an ``up`` topic, verifies every entry and acknowledges it in
    ``context`` (if given)."""

    host: str
    port: int
    topics: list[str]
    context: FakeUplinkContext | None = None
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)
    entries: dict[Key, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: threading.Event = field(default_factory=threading.Event)
    _client: Any = None

    def start(self) -> CloudSubscriber:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]  # floats work
        client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self.topics])
        client.on_message = self._on_message
        client.on_subscribe = lambda *_: self._ready.set()
        client.connect_async(self.host, self.port, keepalive=10)
        client.loop_start()
        self._client = client
        return self

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        received = Received(message.topic, bytes(message.payload), message.qos, message.retain)
        with self._lock:
            self.messages.append(received)
        if not message.topic.endswith("/up"):
            return
        for raw in decode_entry_batch(received.payload):
            entry = decode_entry(raw)
            verify_entry(entry)
            key = (entry.author, entry.seq)
            with self._lock:
                self.entries[key] = raw
            if self.context is not None:
                self.context.acked.add(key)

    async def ready(self, timeout: float = 5.0) -> CloudSubscriber:
        """Wait for the SUBACK: from now on nothing published is missed."""
        await wait_until(self._ready.is_set, timeout, "the subscription")
        return self

    def on(self, suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


@contextlib.asynccontextmanager
async def subscribed(
    host: str, port: int, topics: list[str], **options: Any
) -> AsyncIterator[CloudSubscriber]:
    """A started :class:`CloudSubscriber` whose subscription is in place."""
    subscriber = CloudSubscriber(host, port, topics, **options).start()
    try:
        yield await subscriber.ready()
    finally:
        subscriber.stop()


async def retained(host: str, port: int, topic_filter: str, settle: float = 0.5,
                   **options: Any) -> list[Received]:  # fmt: skip
    """What a fresh client subscribing to ``topic_filter`` gets within ``settle`` s:
    the retained messages (``retain`` set), as a newcomer would see them."""
    async with subscribed(host, port, [topic_filter], **options) as subscriber:
        await asyncio.sleep(settle)
        with subscriber._lock:
            return list(subscriber.messages)
