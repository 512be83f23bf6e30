"""An MQTT-aware TCP proxy between an uplink and the real broker, for what the
broker cannot show or do by itself.

It reads the packets crossing it (fixed header and remaining length are all
it needs) and can:

* refuse MQTT 5: a CONNECT with protocol level 5 gets the 3.1.1 CONNACK
  "unacceptable protocol version" (``20 02 00 01``) and the socket closes —
  what a 3.1.1-only broker answers; other CONNECTs pass to Mosquitto;
* count the QoS 1 PUBLISH packets on one topic that the client has sent and
  whose PUBACK it has not yet seen (``outstanding``, ``max_outstanding``);
* hold those PUBACKs back (``hold()`` … ``release()``), to see that the client
  stops at its window;
* cut every connection at once (``cut()``), a link loss without a broker crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

__all__ = ["MqttGate"]

CONNECT, PUBLISH, PUBACK = 1, 3, 4
REFUSE_PROTOCOL = b"\x20\x02\x00\x01"


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT control packet; IncompleteReadError at EOF."""
    first = await reader.readexactly(1)
    header = bytearray(first)
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        header.append(byte)
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return bytes(header) + await reader.readexactly(length)


def body_of(packet: bytes) -> bytes:
    i = 1
    while packet[i] & 0x80:
        i += 1
    return packet[i + 1 :]


def connect_level(packet: bytes) -> int:
    body = body_of(packet)
    (name_length,) = struct.unpack("!H", body[:2])
    level: int = body[2 + name_length]
    return level


def publish_topic_and_id(packet: bytes) -> tuple[str, int | None]:
    body = body_of(packet)
    (topic_length,) = struct.unpack("!H", body[:2])
    topic = body[2 : 2 + topic_length].decode()
    qos = (packet[0] >> 1) & 3
    if qos == 0:
        return topic, None
    (packet_id,) = struct.unpack("!H", body[2 + topic_length : 4 + topic_length])
    return topic, packet_id


@dataclass
class _Link:
    client: asyncio.StreamWriter
    broker: asyncio.StreamWriter
    outstanding: set[int] = field(default_factory=set)
    held: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class MqttGate:
    broker_host: str
    broker_port: int
    watch_topic: str = ""
    refuse_v5: bool = False
    connect_levels: list[int] = field(default_factory=list)
    publishes: int = 0
    max_outstanding: int = 0
    _holding: bool = False
    _links: list[_Link] = field(default_factory=list)
    _server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> MqttGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def outstanding(self) -> int:
        return sum(len(link.outstanding) for link in self._links)

    def hold(self) -> None:
        self._holding = True

    def release(self, *, keep_holding: bool = False) -> None:
        """Pass the held PUBACKs on; hold the next ones too with ``keep_holding``."""
        self._holding = keep_holding
        for link in self._links:
            for packet_id, packet in link.held:
                link.outstanding.discard(packet_id)
                link.client.write(packet)
            link.held.clear()

    def cut(self) -> None:
        for link in list(self._links):
            link.client.transport.abort()
            link.broker.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            first = await read_packet(client_r)
        except (asyncio.IncompleteReadError, ConnectionError):
            client_w.close()
            return
        level = connect_level(first) if first[0] >> 4 == CONNECT else 0
        self.connect_levels.append(level)
        if self.refuse_v5 and level == 5:
            client_w.write(REFUSE_PROTOCOL)
            with contextlib.suppress(ConnectionError):
                await client_w.drain()
            client_w.close()
            return
        broker_r, broker_w = await asyncio.open_connection(self.broker_host, self.broker_port)
        link = _Link(client_w, broker_w)
        self._links.append(link)
        broker_w.write(first)
        up = asyncio.create_task(self._client_to_broker(link, client_r))
        down = asyncio.create_task(self._broker_to_client(link, broker_r))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()
            client_w.transport.abort()
            broker_w.transport.abort()
            self._links.remove(link)

    async def _client_to_broker(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                packet = await read_packet(reader)
                if packet[0] >> 4 == PUBLISH:
                    topic, packet_id = publish_topic_and_id(packet)
                    if packet_id is not None and topic == self.watch_topic:
                        self.publishes += 1
                        link.outstanding.add(packet_id)
                        self.max_outstanding = max(self.max_outstanding, self.outstanding)
                link.broker.write(packet)
                await link.broker.drain()

    async def _broker_to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                packet = await read_packet(reader)
                if packet[0] >> 4 == PUBACK:
                    (packet_id,) = struct.unpack("!H", body_of(packet)[:2])
                    if packet_id in link.outstanding:
                        if self._holding:
                            link.held.append((packet_id, packet))
                            continue
                        link.outstanding.discard(packet_id)
                link.client.write(packet)
                await link.client.drain()
