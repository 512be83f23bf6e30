"""An :class:`~agent.plugin_api.UplinkContext` for tests, over a real signed log,
and a "cloud" that reads the ``up`` topic and acknowledges what it got."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.entry import decode_entry, verify_entry
from agent.plugin_api import SensorReading
from agent.uplink.wire import decode_batch, split_batches
from tests.helpers.nodes import Node

__all__ = ["CloudSubscriber", "LogContext", "Received", "retained", "subscribed", "wait_until"]

Key = tuple[bytes, int]


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class LogContext:
    """The context an uplink gets, with the outbox read from ``node``'s real log.

    An entry is acknowledged when a test (or :class:`CloudSubscriber`) adds its
    ``(author, seq)`` to :attr:`acked`; each :meth:`outbox` call is a fresh pass
    that yields every unacknowledged entry once, and again ``resend_after``
    seconds later if still unacknowledged."""

    def __init__(self, node: Node, *, resend_after: float = 0.5, name: str = "cloud") -> None:
        self.name = name
        self.log = logging.getLogger(f"lichen.uplink.{name}")
        self.node = node
        self.resend_after = resend_after
        self.acked: set[Key] = set()
        self.received: list[list[bytes]] = []
        self.states: list[tuple[bool, str | None]] = []
        self.passes = 0
        self.readings_queue: asyncio.Queue[SensorReading] = asyncio.Queue()

    @property
    def node_id(self) -> str:
        return str(self.node.identity.node_id)

    @property
    def connected(self) -> bool:
        return bool(self.states) and self.states[-1][0]

    def held(self) -> dict[Key, bytes]:
        return {(bytes(a), s): bytes(raw) for a, s, _ts, _c, raw in self.node.reader.raw_rows()}

    async def outbox(self, max_bytes: int) -> AsyncIterator[Sequence[bytes]]:
        self.passes += 1
        sent: dict[Key, float] = {}
        while True:
            now = time.monotonic()
            due = [
                (key, raw)
                for key, raw in self.held().items()
                if key not in self.acked and now - sent.get(key, -1e9) >= self.resend_after
            ]
            if not due:
                await asyncio.sleep(0.05)
                continue
            by_raw = {raw: key for key, raw in due}
            for batch in split_batches([raw for _, raw in due], max_bytes):
                for raw in batch:
                    sent[by_raw[raw]] = time.monotonic()
                yield batch

    async def receive(self, entries: Sequence[bytes]) -> int:
        self.received.append(list(entries))
        return len(entries)

    async def readings(self) -> AsyncIterator[SensorReading]:
        while True:
            yield await self.readings_queue.get()

    def set_connected(self, connected: bool, detail: str | None = None) -> None:
        self.states.append((connected, detail))


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
    context: LogContext | None = None
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
        for raw in decode_batch(received.payload):
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
