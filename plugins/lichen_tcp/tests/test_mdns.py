"""mDNS discovery between TCP transports: over loopback multicast in one process,
and across a second network stack (a namespace behind a veth pair, as root)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from agent.plugin_api import PeerSighting
from lichen_tcp import SERVICE_TYPE, TcpTransport, zeroconf_available
from lichen_tcp.tests.helpers import (
    context_of,
    loopback_multicast_works,
    make_transport,
    why_no_namespaces,
)
from lichen_tcp.tests.netns import VethNamespace

pytestmark = pytest.mark.skipif(not zeroconf_available(), reason="zeroconf is not installed")

MDNS = {"advertise": True, "browse": True, "announce_interval": 1.0}


async def sighting(
    transport: TcpTransport, wanted: Callable[[PeerSighting], bool], timeout: float = 10.0
) -> PeerSighting:
    """The first sighting (known already, or new) that ``wanted`` accepts."""
    async with asyncio.timeout(timeout), contextlib.aclosing(transport.sightings()) as seen:
        async for s in seen:
            if wanted(s):
                return s
    raise AssertionError("the sightings ended")


@pytest.mark.skipif(
    not loopback_multicast_works(), reason="multicast does not loop back on 127.0.0.1 here"
)
@pytest.mark.slow
async def test_two_transports_find_each_other_over_loopback_multicast() -> None:
    # names of this run only: other processes on the host may announce on loopback too
    tag = secrets.token_hex(3)
    alpha_id, beta_id = f"lc1alpha{tag}", f"lc1beta{tag}"
    a = make_transport(alpha_id, interfaces=["127.0.0.1"], **MDNS)
    b = make_transport(beta_id, interfaces=["127.0.0.1"], **MDNS)
    try:
        await asyncio.gather(a.start(), b.start())
        assert a.mdns is not None and b.mdns is not None
        assert a.mdns.instance_name == f"{alpha_id}.{SERVICE_TYPE}"

        alpha = await sighting(b, lambda s: s.node_id == alpha_id)
        assert (alpha.address, alpha.heads_digest) == (a.address, "h0")
        beta = await sighting(a, lambda s: s.node_id == beta_id)
        assert beta.address == b.address
        ours = [p.node_id for p in a.mdns.peers if p.node_id in (alpha_id, beta_id)]
        assert ours == [beta_id]  # never itself

        # the heads change twice in quick succession: one announcement, the latest digest
        context = context_of(a)
        reads = context.digest_reads
        context.digest = "h1"
        a.heads_changed()
        context.digest = "h2"
        a.heads_changed()
        updated = await sighting(b, lambda s: s.node_id == alpha_id and s.heads_digest == "h2")
        assert a.mdns.advertised_heads == "h2" and context.digest_reads == reads + 1

        stream = await b.connect(updated.address)  # the sighting is an address to dial
        incoming = await a.accept()
        await stream.send(b"hello")
        assert await incoming.receive() == b"hello"
        await stream.close()
        await incoming.close()
    finally:
        await asyncio.gather(a.close(), b.close())


class Peer:
    """The peer process in the namespace; reads its JSON events with bounded waits."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def event(self, kind: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while line := await self.process.stdout.readline():
                event: dict[str, Any] = json.loads(line)
                if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                    return event
        stderr = await self.process.stderr.read() if self.process.stderr else b""
        raise AssertionError(f"the peer exited before {kind} {match}: {stderr.decode()[-2000:]}")

    async def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.tell("quit")
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@pytest.mark.skipif(why_no_namespaces() is not None, reason=str(why_no_namespaces()))
@pytest.mark.slow
async def test_discovery_and_streams_across_a_network_namespace() -> None:
    """Two network stacks, as two boards on one link: this process on one end of
    a veth pair, a peer process in a namespace on the other."""
    with VethNamespace() as ns:
        process = await asyncio.create_subprocess_exec(
            *ns.peer_command("lc1peer"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        peer = Peer(process)
        local = make_transport("lc1local", host=ns.host_ip, interfaces=[ns.host_ip], **MDNS)
        try:
            ready = await peer.event("ready")
            assert ready["address"].startswith(f"tcp://{ns.peer_ip}:")
            await local.start()

            found = await sighting(local, lambda s: s.node_id == "lc1peer")
            assert (found.address, found.heads_digest) == (ready["address"], "h0")
            seen = await peer.event("sighting", node_id="lc1local")
            assert (seen["address"], seen["heads"]) == (local.address, "h0")

            await peer.tell("heads p1")  # the peer's log grew
            await sighting(local, lambda s: s.node_id == "lc1peer" and s.heads_digest == "p1")
            context_of(local).digest = "l1"  # and ours
            local.heads_changed()
            await peer.event("sighting", node_id="lc1local", heads="l1")

            stream = await local.connect(found.address)  # TCP across the pair
            payload = random.Random(7).randbytes(300_000)
            echoed = bytearray()

            async def send() -> None:
                await stream.send(payload)
                await stream.send_eof()

            async def read() -> None:
                while data := await stream.receive():
                    echoed.extend(data)

            await asyncio.gather(send(), read())
            await stream.close()
            assert bytes(echoed) == payload
            assert (await peer.event("echoed"))["bytes"] == len(payload)
        finally:
            await peer.stop()
            await local.close()
    assert not ns.exists(), "the namespace or the veth pair was left behind"
