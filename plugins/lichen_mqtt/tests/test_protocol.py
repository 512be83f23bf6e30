"""Protocol versions: "auto" tries MQTT 5 and falls back to 3.1.1 when the broker
refuses it (a gate in front of Mosquitto answers a v5 CONNECT the way a
3.1.1-only broker does: CONNACK 0x01, "unacceptable protocol version")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.testing import FakeUplinkContext, wait_until
from lichen_mqtt import MqttUplink
from lichen_mqtt.tests.context import subscribed
from lichen_mqtt.tests.gate import MqttGate
from lichen_mqtt.tests.helpers import fast_config, running, uplink_context
from tests.helpers.broker import Broker

pytestmark = pytest.mark.slow

UP = "lichen/v1/+/+/up"


@contextlib.asynccontextmanager
async def gated(
    mosquitto: Broker, entries: int, *, refuse_v5: bool = False, **options: Any
) -> AsyncIterator[tuple[MqttGate, MqttUplink, FakeUplinkContext]]:
    """An uplink holding ``entries`` entries, configured to reach Mosquitto through
    a gate (not running yet)."""
    gate = await MqttGate(mosquitto.host, mosquitto.port, refuse_v5=refuse_v5).start()
    try:
        context = uplink_context(entries)
        yield gate, MqttUplink(fast_config(gate.url, **options), context), context
    finally:
        await gate.close()


async def test_auto_falls_back_to_3_1_1(mosquitto: Broker) -> None:
    async with (
        gated(mosquitto, 30, refuse_v5=True, protocol="auto") as (gate, uplink, context),
        subscribed(mosquitto.host, mosquitto.port, [UP], context=context) as cloud,
        running(uplink),
    ):
        await wait_until(lambda: len(cloud.entries) == 30, what="every entry")
        assert gate.connect_levels == [5, 4]  # v5 refused, then 3.1.1 at once
        assert uplink.stats.protocol == "3.1.1"
        assert context.states[0] == (True, gate.url)  # no "down" state in between
        gate.cut()  # the fallback sticks: the next connection is 3.1.1 straight away
        await wait_until(lambda: len(gate.connect_levels) == 3, what="a reconnection")
        assert gate.connect_levels[-1] == 4


async def test_auto_uses_5_where_the_broker_speaks_it(mosquitto: Broker) -> None:
    async with gated(mosquitto, 1) as (gate, uplink, context):
        async with running(uplink):
            await wait_until(lambda: context.connected, what="the connection")
        assert gate.connect_levels == [5] and uplink.stats.protocol == "5"


async def test_5_only_does_not_fall_back(mosquitto: Broker) -> None:
    async with gated(mosquitto, 1, refuse_v5=True, protocol="5") as (gate, uplink, context):
        async with running(uplink) as task:
            await wait_until(lambda: len(context.states) >= 2, what="refusals")
            assert not task.done()
        assert set(gate.connect_levels) == {5}
        detail = context.states[0][1] or ""
        assert detail == f"{gate.url} refused the connection: Unsupported protocol version"


async def test_3_1_1_against_mosquitto(mosquitto: Broker) -> None:
    async with gated(mosquitto, 30, protocol="3.1.1") as (gate, uplink, context):
        async with (
            subscribed(mosquitto.host, mosquitto.port, [UP], context=context) as cloud,
            running(uplink),
        ):
            await wait_until(lambda: len(cloud.entries) == 30, what="every entry")
        assert gate.connect_levels == [4] and uplink.stats.protocol == "3.1.1"
