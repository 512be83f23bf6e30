"""Protocol versions: "auto" tries MQTT 5 and falls back to 3.1.1 when the broker
refuses it (a gate in front of Mosquitto answers a v5 CONNECT the way a
3.1.1-only broker does: CONNACK 0x01, "unacceptable protocol version")."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.testing import wait_until
from lichen_mqtt import MqttUplink
from lichen_mqtt.tests.context import subscribed
from lichen_mqtt.tests.gate import MqttGate
from lichen_mqtt.tests.helpers import fast_config, running, uplink_context
from tests.helpers.broker import Broker

pytestmark = pytest.mark.slow

UP = "lichen/v1/+/+/up"


async def test_auto_falls_back_to_3_1_1(tmp_path: Path, mosquitto: Broker) -> None:
    gate = await MqttGate(mosquitto.host, mosquitto.port, refuse_v5=True).start()
    try:
        context = uplink_context(30)
        uplink = MqttUplink(fast_config(gate.url, protocol="auto"), context)
        async with (
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
    finally:
        await gate.close()


async def test_auto_uses_5_where_the_broker_speaks_it(tmp_path: Path, mosquitto: Broker) -> None:
    gate = await MqttGate(mosquitto.host, mosquitto.port).start()
    try:
        context = uplink_context(1)
        uplink = MqttUplink(fast_config(gate.url), context)
        async with running(uplink):
            await wait_until(lambda: context.connected, what="the connection")
        assert gate.connect_levels == [5] and uplink.stats.protocol == "5"
    finally:
        await gate.close()


async def test_5_only_does_not_fall_back(tmp_path: Path, mosquitto: Broker) -> None:
    gate = await MqttGate(mosquitto.host, mosquitto.port, refuse_v5=True).start()
    try:
        context = uplink_context(1)
        uplink = MqttUplink(fast_config(gate.url, protocol="5"), context)
        async with running(uplink) as task:
            await wait_until(lambda: len(context.states) >= 2, what="refusals")
            assert not task.done()
        assert set(gate.connect_levels) == {5}
        detail = context.states[0][1] or ""
        assert detail == f"{gate.url} refused the connection: Unsupported protocol version"
    finally:
        await gate.close()


async def test_3_1_1_against_mosquitto(tmp_path: Path, mosquitto: Broker) -> None:
    gate = await MqttGate(mosquitto.host, mosquitto.port).start()
    try:
        context = uplink_context(30)
        uplink = MqttUplink(fast_config(gate.url, protocol="3.1.1"), context)
        async with (
            subscribed(mosquitto.host, mosquitto.port, [UP], context=context) as cloud,
            running(uplink),
        ):
            await wait_until(lambda: len(cloud.entries) == 30, what="every entry")
        assert gate.connect_levels == [4] and uplink.stats.protocol == "3.1.1"
    finally:
        await gate.close()
