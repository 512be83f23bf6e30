"""What the MQTT uplink's tests share: a context holding signed entries (agent.testing's
fake), an uplink factory, and running an uplink as a task for the length of a
``with`` block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agent.testing import FakeUplinkContext
from lichen_mqtt import MqttConfig, MqttUplink
from tests.helpers.broker import Broker

__all__ = ["context_of", "fast_config", "publish", "running", "uplink_context"]


def fast_config(broker: str, **options: Any) -> MqttConfig:
    """An uplink configuration with test-sized delays."""
    settings: dict[str, Any] = {
        "name": "cloud",
        "broker": broker,
        "reconnect_min": 0.05,
        "reconnect_max": 0.3,
        "connect_timeout": 3.0,
        "keepalive": 10,
    }
    settings.update(options)
    return MqttConfig(**settings)


def uplink_context(n: int, size: int = 200, **options: Any) -> FakeUplinkContext:
    """The context an uplink gets, holding ``n`` signed entries of about ``size`` bytes."""
    context = FakeUplinkContext(**options)
    context.append(n, size=size)
    return context


@contextlib.asynccontextmanager
async def running(uplink: MqttUplink) -> AsyncIterator[asyncio.Task[None]]:
    """``uplink.run()`` as a task; cancelled (a clean stop) when the block ends."""
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def context_of(uplink: MqttUplink) -> FakeUplinkContext:
    context = uplink.context
    assert isinstance(context, FakeUplinkContext)
    return context


def publish(broker: Broker, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """One QoS 1 message from a separate, short-lived client (blocking)."""
    from paho.mqtt import publish as single

    single.single(topic, payload, qos=1, retain=retain, hostname=broker.host, port=broker.port)
