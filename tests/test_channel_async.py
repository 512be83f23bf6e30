"""The asyncio shell: open_channel and Channel over a small in-memory stream pair."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.channel import (
    Channel,
    ChannelRejected,
    ChannelTimeout,
    SecureChannel,
    UntrustedPeer,
    open_channel,
)
from agent.channel import stream as stream_module
from agent.errors import ChannelError, LocalProtocolError, TransportError
from agent.identity import NodeId
from agent.sansio import NEED_DATA
from agent.transport import memory_stream_pair

from .test_channel_sansio import ALICE, BOB, MALLORY, PSK, accept, expect

Queue = asyncio.Queue[bytes]


class MemoryStream:
    """One end of an in-memory link that delivers at most ``chunk`` bytes per receive."""

    def __init__(self, name: str, inbox: Queue, outbox: Queue, chunk: int) -> None:
        self.name, self._inbox, self._outbox, self._chunk = name, inbox, outbox, chunk
        self._pending = b""
        self._eof_in = self._eof_out = self.closed = False
        self.sent = 0

    @property
    def max_frame_hint(self) -> int:
        return self._chunk

    @property
    def peer(self) -> str:
        return f"memory://{self.name}"

    async def send(self, data: bytes) -> None:
        if self._eof_out or self.closed:
            raise TransportError(f"send on a closed stream to {self.peer}")
        self.sent += len(data)
        if data:
            await self._outbox.put(data)

    async def send_eof(self) -> None:
        if not self._eof_out:
            self._eof_out = True
            await self._outbox.put(b"")

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._pending and not self._eof_in:
            self._pending = await self._inbox.get()
            self._eof_in = not self._pending
        data = self._pending[: min(max_bytes, self._chunk)]
        self._pending = self._pending[len(data) :]
        return data

    async def close(self) -> None:
        await self.send_eof()
        if not self.closed:
            self.closed = True
            await self._inbox.put(b"")  # a receive waiting here ends too


def stream_pair(chunk: int = 65536) -> tuple[MemoryStream, MemoryStream]:
    one: Queue = asyncio.Queue()
    two: Queue = asyncio.Queue()
    return MemoryStream("b", one, two, chunk), MemoryStream("a", two, one, chunk)


async def connect(chunk: int = 65536, **options: object) -> tuple[Channel, Channel]:
    left, right = stream_pair(chunk)
    return await asyncio.gather(
        open_channel(left, ALICE, initiator=True, trust=accept, **options),  # type: ignore[arg-type]
        open_channel(right, BOB, initiator=False, trust=accept, **options),  # type: ignore[arg-type]
    )


async def test_open_send_receive_close() -> None:
    a, b = await connect()
    assert a.peer == BOB.node_id and b.peer == ALICE.node_id
    assert a.sas == b.sas and len(a.sas) == 6
    assert a.handshake_hash == b.handshake_hash
    assert "memory://b" in repr(a)
    await a.send(b"hello")
    await a.send(bytes(200_000))
    assert await b.receive() == b"hello"
    assert await b.receive() == bytes(200_000)
    await b.send(b"hi back")
    assert await a.receive() == b"hi back"
    await a.close()
    await a.close()
    assert await b.receive() == b""
    assert await b.receive() == b""
    await b.close()


async def test_twenty_byte_reads() -> None:
    a, b = await connect(chunk=20, psk=PSK)
    assert a.stream.max_frame_hint == 20
    payloads = [b"x" * n for n in (1, 19, 20, 21, 70_000)]
    for data in payloads:
        await a.send(data)
    assert [await b.receive() for _ in payloads] == payloads


async def test_send_and_receive_in_separate_tasks() -> None:
    a, b = await connect(chunk=512)

    async def pump(channel: Channel, tag: bytes) -> list[bytes]:
        async def writer() -> None:
            for n in range(50):
                await channel.send(tag + b"%d" % n * 40)
            await channel.send_eof()
            await channel.send_eof()

        task = asyncio.create_task(writer())
        got = []
        while data := await channel.receive():
            got.append(data)
        await task
        return got

    got_a, got_b = await asyncio.gather(pump(a, b"A"), pump(b, b"B"))
    with pytest.raises(LocalProtocolError, match="after close"):
        await a.send(b"late")
    await a.close()
    await b.close()
    assert got_b == [b"A" + b"%d" % n * 40 for n in range(50)]
    assert got_a == [b"B" + b"%d" % n * 40 for n in range(50)]


async def test_untrusted_peers_are_refused_on_both_sides() -> None:
    left, right = stream_pair()
    results = await asyncio.gather(
        open_channel(left, ALICE, initiator=True, trust=expect(BOB.node_id)),
        open_channel(right, MALLORY, initiator=False, trust=accept),
        return_exceptions=True,
    )
    refused, other = results
    assert isinstance(refused, UntrustedPeer) and refused.peer == MALLORY.node_id
    assert "expected" in refused.reason and left.closed
    assert isinstance(other, ChannelRejected) and "during the handshake" in other.reason

    left, right = stream_pair()
    results = await asyncio.gather(
        open_channel(left, ALICE, initiator=True, trust=accept),
        open_channel(right, BOB, initiator=False, trust=lambda peer: "not a fleet member"),
        return_exceptions=True,
    )
    initiator_side, responder_side = results
    assert isinstance(responder_side, UntrustedPeer)
    assert responder_side.reason == "not a fleet member" and right.closed
    assert isinstance(initiator_side, ChannelRejected)
    assert "instead of confirming" in initiator_side.reason


async def test_mismatched_psk_fails_on_both_sides() -> None:
    left, right = stream_pair()
    results = await asyncio.gather(
        open_channel(left, ALICE, initiator=True, trust=accept, psk=PSK),
        open_channel(right, BOB, initiator=False, trust=accept, psk=bytes(32)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ChannelRejected) for r in results)


async def test_a_silent_peer_times_out() -> None:
    left, _right = stream_pair()
    started = time.monotonic()
    with pytest.raises(ChannelTimeout, match=r"did not finish within 0\.2 s"):
        await open_channel(left, ALICE, initiator=True, trust=accept, timeout=0.2)
    assert time.monotonic() - started < 2 and left.closed


async def test_garbage_from_the_peer_is_refused_quickly() -> None:
    left, right = stream_pair()
    await right.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    with pytest.raises(ChannelRejected, match="announced a"):
        await open_channel(left, ALICE, initiator=False, trust=accept)
    assert left.closed


async def test_tampering_after_the_handshake_is_an_error_not_data() -> None:
    a, b = await connect()
    b_stream = b.stream
    assert isinstance(b_stream, MemoryStream)
    await a.send(b"fine")
    assert await b.receive() == b"fine"
    await a.stream.send(b"\x00\x20" + bytes(32))  # a forged record
    with pytest.raises(ChannelRejected, match="does not decrypt"):
        await b.receive()
    assert b_stream.closed
    with pytest.raises(ChannelRejected, match="already failed"):
        await b.receive()


async def test_a_cut_link_is_an_error() -> None:
    a, b = await connect()
    await a.stream.close()  # no close notice
    with pytest.raises(ChannelRejected, match="without a close notice"):
        await b.receive()


async def test_transport_errors_become_channel_errors() -> None:
    a, b = await connect()
    await a.stream.close()
    with pytest.raises(ChannelError, match="link to memory://b failed") as failed:
        await a.send(b"into the void")
    assert isinstance(failed.value.__cause__, TransportError)
    left, right = stream_pair()
    await left.close()
    with pytest.raises(ChannelError, match="failed"):
        await open_channel(left, ALICE, initiator=True, trust=accept)
    del b, right


async def test_the_context_manager_closes() -> None:
    a, b = await connect()
    async with a:
        await a.send(b"inside")
    assert await b.receive() == b"inside"
    assert await b.receive() == b""


async def test_trust_sees_the_proven_node_id() -> None:
    seen: list[NodeId] = []

    def trust(peer: NodeId) -> str | None:
        seen.append(peer)
        return None

    left, right = stream_pair(chunk=7)
    a, b = await asyncio.gather(
        open_channel(left, ALICE, initiator=True, trust=trust),
        open_channel(right, BOB, initiator=False, trust=trust),
    )
    assert sorted(seen) == sorted([ALICE.node_id, BOB.node_id])
    assert a.sas == b.sas


async def test_closing_ends_a_receive_that_is_waiting() -> None:
    a, b = await connect()
    waiting = asyncio.create_task(a.receive())
    await asyncio.sleep(0)
    await a.close()
    assert await asyncio.wait_for(waiting, 1) == b""
    assert await a.receive() == b""
    assert await b.receive() == b""


async def _stalled_handshake(*, flights: int, cut: int = 0) -> tuple[MemoryStream, float]:
    """Run open_channel against a peer that sends its first ``flights`` handshake
    flights (the last one cut short by ``cut`` bytes) and then falls silent, the
    link still open. Return our stream and how long the failure took."""
    left, right = stream_pair()
    peer = SecureChannel(BOB, initiator=False, trust=accept)
    opening = asyncio.create_task(
        open_channel(left, ALICE, initiator=True, trust=accept, timeout=0.2)
    )
    started = time.monotonic()
    for flight in range(flights):
        peer.receive_data(await right.receive())
        while peer.next_event() is not NEED_DATA:
            pass
        data = peer.data_to_send()
        await right.send(data[: len(data) - cut] if flight == flights - 1 else data)
    with pytest.raises(ChannelTimeout, match=r"did not finish within 0\.2 s"):
        await opening
    return left, time.monotonic() - started


@pytest.mark.parametrize(
    ("flights", "cut"),
    [(0, 0), (1, 100), (1, 1), (1, 0)],
    ids=["before-message-2", "mid-message-2", "message-2-but-one-byte", "before-ready"],
)
async def test_a_peer_that_stalls_mid_handshake_times_out(flights: int, cut: int) -> None:
    left, elapsed = await _stalled_handshake(flights=flights, cut=cut)
    assert elapsed < 2 and left.closed


async def test_a_responder_whose_initiator_stalls_times_out() -> None:
    left, right = stream_pair()
    peer = SecureChannel(ALICE, initiator=True, trust=accept)
    await left.send(peer.data_to_send())  # message 1, then nothing
    with pytest.raises(ChannelTimeout):
        await open_channel(right, BOB, initiator=False, trust=accept, timeout=0.2)
    assert right.closed


async def test_closing_does_not_wait_forever_for_a_peer_that_stopped_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_module, "CLOSE_TIMEOUT", 0.2)
    left, right = memory_stream_pair(buffer=1024)
    a, _b = await asyncio.gather(
        open_channel(left, ALICE, initiator=True, trust=accept),
        open_channel(right, BOB, initiator=False, trust=accept),
    )
    sending = asyncio.create_task(a.send(bytes(100_000)))  # B never reads: this send waits
    for _ in range(100):
        await asyncio.sleep(0)
    assert not sending.done()
    async with asyncio.timeout(30):  # a hang, not a speed limit
        await a.close()
    with pytest.raises(ChannelError):
        await sending
