"""Losing the broker and finding it again, with a real Mosquitto killed by PID."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.testing import wait_until
from lichen_mqtt import MqttUplink
from lichen_mqtt.tests.context import subscribed
from lichen_mqtt.tests.helpers import fast_config, running, uplink_context
from tests.helpers.broker import Broker, free_port

pytestmark = pytest.mark.slow

UP = "lichen/v1/+/+/up"


async def test_broker_killed_and_restarted(tmp_path: Path, mosquitto: Broker) -> None:
    """SIGKILL the broker mid-stream: the uplink reports the link down, keeps
    the log as the outbox, reconnects by itself when the broker is back and
    starts a fresh outbox pass that delivers everything, old and new."""
    context = uplink_context(200, size=300, resend_after=0.5)
    uplink = MqttUplink(fast_config(mosquitto.url, max_payload=2048, window=2), context)
    async with running(uplink) as task:
        async with subscribed(mosquitto.host, mosquitto.port, [UP], context=context) as cloud:
            await wait_until(lambda: len(cloud.entries) >= 20, what="the first batches")
            mosquitto.kill()
            await wait_until(lambda: not context.connected, what="the link reported down")
            context.append(100, size=300)  # written while the broker is away
            passes = context.passes

            def down() -> list[str]:
                return [detail or "" for up, detail in context.states if not up]

            await wait_until(
                lambda: any("cannot connect" in d for d in down()), what="a failed attempt"
            )
            await asyncio.sleep(0.3)  # and a few more
            assert not task.done()  # network errors never end run()
            assert any("connection lost" in d for d in down())
            assert context.passes == passes  # no pass without a connection
        mosquitto.start()  # the same port, a new process
        async with subscribed(mosquitto.host, mosquitto.port, [UP], context=context) as cloud:
            # a fresh pass after reconnecting (it starts one step after connected)
            await wait_until(
                lambda: context.connected and context.passes > passes, what="a fresh pass"
            )
            await wait_until(lambda: len(context.acked) == 300, what="every entry")
        assert set(context.acked) == set(context.held())
    assert uplink.stats.connects >= 2


async def test_starts_with_the_broker_down(tmp_path: Path) -> None:
    """No broker at boot: run() keeps trying (jittered, growing delays) and
    connects once a broker listens."""
    broker = Broker(tmp_path / "broker", free_port())
    broker.directory.mkdir(parents=True)
    context = uplink_context(50)
    uplink = MqttUplink(fast_config(broker.url), context)
    try:
        async with running(uplink) as task:
            await wait_until(lambda: len(context.states) >= 3, what="a few failed attempts")
            assert not task.done()
            assert not any(up for up, _ in context.states)
            assert "cannot connect to" in (context.states[-1][1] or "")
            assert "refused" in (context.states[-1][1] or "").lower()
            broker.start()
            async with subscribed(broker.host, broker.port, [UP], context=context):
                await wait_until(lambda: len(context.acked) == 50, what="every entry")
            assert context.connected
    finally:
        broker.stop()
