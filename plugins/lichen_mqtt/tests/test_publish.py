"""The publish path against a real Mosquitto: every entry of a real signed log
reaches the broker exactly as signed, in batches within ``max_payload``, at
QoS 1, never more than ``window`` awaiting their PUBACK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.testing import wait_until
from agent.uplink.wire import Topics
from lichen_mqtt import MqttUplink
from lichen_mqtt.tests.context import retained, subscribed
from lichen_mqtt.tests.gate import MqttGate
from lichen_mqtt.tests.helpers import fast_config, running, uplink_context
from tests.helpers.broker import Broker

pytestmark = pytest.mark.slow


async def test_every_entry_arrives_exactly_as_signed(tmp_path: Path, mosquitto: Broker) -> None:
    context = uplink_context(300, size=200, resend_after=5.0)
    uplink = MqttUplink(fast_config(mosquitto.url, max_payload=2048), context)
    held = context.held()
    async with (
        subscribed(mosquitto.host, mosquitto.port, ["lichen/v1/+/+/up"], context=context) as cloud,
        running(uplink),
    ):
        await wait_until(lambda: len(cloud.entries) == len(held), what="every entry")
    assert cloud.entries == held  # the exact signed bytes, each verified on arrival
    ups = cloud.on("/up")
    assert ups and all(m.topic == Topics("default", context.node_id).up for m in ups)
    assert all(len(m.payload) <= 2048 for m in ups)
    assert {m.qos for m in ups} == {1}  # delivered at QoS 1: it was published at QoS 1
    assert not any(m.retain for m in ups)
    assert uplink.stats.entries == len(held) and uplink.stats.batches == len(ups)
    assert len(ups) > 10  # max_payload really split the log
    assert context.states[0] == (True, mosquitto.url)
    assert context.states[-1] == (False, "stopped")


async def test_never_more_than_window_awaiting_puback(tmp_path: Path, mosquitto: Broker) -> None:
    """The gate holds every PUBACK of the ``up`` topic: the uplink must stop at
    exactly ``window`` publishes until they are released."""
    context = uplink_context(120, size=200, resend_after=30.0)
    up = Topics("default", context.node_id).up
    gate = await MqttGate(mosquitto.host, mosquitto.port, watch_topic=up).start()
    gate.hold()
    uplink = MqttUplink(fast_config(gate.url, window=3, max_payload=1024), context)
    try:
        async with (
            subscribed(mosquitto.host, mosquitto.port, [up], context=context) as cloud,
            running(uplink),
        ):
            await wait_until(lambda: gate.publishes >= 3, what="the first window")
            await asyncio.sleep(0.5)
            assert gate.publishes == 3 and gate.outstanding == 3  # stopped at the window
            gate.release(keep_holding=True)
            await wait_until(lambda: gate.publishes >= 6, what="the second window")
            await asyncio.sleep(0.3)
            assert gate.publishes == 6
            gate.release()  # and from now on let everything through
            await wait_until(lambda: len(cloud.entries) == 120, what="every entry")
            # The broker may forward the last batch to the subscriber before
            # the uplink has read its PUBACK: wait for that too.
            await wait_until(lambda: uplink.in_flight == 0, what="the last PUBACK")
    finally:
        await gate.close()
    assert gate.max_outstanding == 3  # reached, never passed
    assert uplink.stats.max_in_flight == 3
    assert uplink.stats.pubacks >= uplink.stats.batches  # and the status message


async def test_online_then_offline_on_a_clean_stop(tmp_path: Path, mosquitto: Broker) -> None:
    context = uplink_context(1)
    status = Topics("default", context.node_id).status
    uplink = MqttUplink(fast_config(mosquitto.url), context)
    async with running(uplink):
        await wait_until(lambda: context.connected, what="the connection")
        seen = await retained(mosquitto.host, mosquitto.port, status)
        assert [(m.payload, m.retain) for m in seen] == [(b"online", True)]
    seen = await retained(mosquitto.host, mosquitto.port, status)
    assert [(m.payload, m.retain) for m in seen] == [(b"offline", True)]


async def test_the_last_will_says_offline_when_the_link_is_cut(
    tmp_path: Path, mosquitto: Broker
) -> None:
    context = uplink_context(1)
    status = Topics("default", context.node_id).status
    gate = await MqttGate(mosquitto.host, mosquitto.port).start()
    uplink = MqttUplink(fast_config(gate.url, reconnect_min=5.0, reconnect_max=5.0), context)
    try:
        async with (
            subscribed(mosquitto.host, mosquitto.port, [status]) as watcher,
            running(uplink),
        ):
            await wait_until(lambda: bool(watcher.on("/status")), what="online")
            gate.cut()
            await wait_until(lambda: len(watcher.on("/status")) >= 2, what="the will")
            assert [m.payload for m in watcher.on("/status")] == [b"online", b"offline"]
            await wait_until(lambda: not context.connected, what="the link reported down")
            assert "lost" in (context.states[-1][1] or "")
    finally:
        await gate.close()
