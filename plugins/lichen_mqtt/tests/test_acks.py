"""What comes back on the ``ack`` topic reaches ``context.receive``; a malformed
payload is logged with the reason and ignored, and the uplink carries on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.clock import HybridClock
from agent.entry import Entry, sign_entry
from agent.identity import Identity
from agent.testing import wait_until
from agent.uplink.wire import ACKS_COLLECTION, Topics, ack_body, encode_entry_batch
from lichen_mqtt import MqttUplink
from lichen_mqtt.tests.helpers import fast_config, publish, running, uplink_context
from tests.helpers.broker import Broker

pytestmark = pytest.mark.slow


class CloudFeed:
    """The cloud's own feed, signing acknowledgements one after the other."""

    def __init__(self) -> None:
        self.identity = Identity.generate()
        self.clock = HybridClock()
        self.last: Entry | None = None

    def acknowledge(self, node_id: str, seq: int) -> bytes:
        """The signed acknowledgement of ``node_id``'s entries 1..seq."""
        self.last = sign_entry(
            self.identity,
            seq=self.last.seq + 1 if self.last else 1,
            prev=self.last.hash if self.last else None,
            ts=self.clock.now(),
            collection=ACKS_COLLECTION,
            doc_id=node_id,
            body=ack_body(seq),
        )
        return self.last.raw


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_acks_are_handed_to_receive(
    tmp_path: Path, mosquitto: Broker, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = CloudFeed()
    context = uplink_context(3)
    ack_topic = Topics("default", context.node_id).ack
    first = cloud.acknowledge(context.node_id, 2)
    # retained before the board connects, as the cloud leaves it
    publish(mosquitto, ack_topic, encode_entry_batch([first]), retain=True)
    uplink = MqttUplink(fast_config(mosquitto.url, protocol=protocol), context)
    caplog.set_level(logging.WARNING, logger=context.log.name)
    async with running(uplink) as task:
        await wait_until(lambda: context.received == [[first]], what="the retained ack")

        publish(mosquitto, ack_topic, b"\xa1\x01\x02")  # CBOR, not a batch
        publish(mosquitto, ack_topic, b"\xff\xfe not CBOR")
        second = cloud.acknowledge(context.node_id, 3)
        publish(mosquitto, ack_topic, encode_entry_batch([second]))
        await wait_until(lambda: len(context.received) == 2, what="the next good ack")
        assert context.received[1] == [second]
        assert not task.done() and context.connected
    assert uplink.stats.malformed_acks == 2
    assert uplink.stats.acks_received == uplink.stats.acks_stored == 2
    warnings = [r.getMessage() for r in caplog.records if "malformed ack" in r.getMessage()]
    assert len(warnings) == 2
    assert "batch must be the array [version, [entries]]" in warnings[0]
    assert "batch is not valid CBOR" in warnings[1]
    assert ack_topic in warnings[0]


async def test_a_cleared_retained_ack_is_not_an_error(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    context = uplink_context(1)
    ack_topic = Topics("default", context.node_id).ack
    uplink = MqttUplink(fast_config(mosquitto.url), context)
    async with running(uplink):
        await wait_until(lambda: context.connected, what="the connection")
        publish(mosquitto, ack_topic, b"", retain=True)  # deletes a retained message
        good = CloudFeed().acknowledge(context.node_id, 1)
        publish(mosquitto, ack_topic, encode_entry_batch([good]))
        await wait_until(lambda: context.received == [[good]], what="the ack")
    assert uplink.stats.malformed_acks == 0
    assert not [r for r in caplog.records if "malformed" in r.getMessage()]
