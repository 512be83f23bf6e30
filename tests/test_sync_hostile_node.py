"""Hostile peers against a real node: a SQLite log, the Noise channel, the gossip runtime.

The hostile side is written here: a real channel to the node, then bytes that
break the sync protocol, or a peer that never reads. The node must answer a
broken rule with ERROR naming it, end the session and penalise the peer; and
whatever a peer does, the memory the node spends on it stays bounded while
honest peers go on syncing with it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.channel import Channel, open_channel
from agent.errors import ChannelError
from agent.identity import Identity
from agent.mesh.session import SessionReport, SyncSession
from agent.sync import (
    DEFAULT_WINDOW,
    Done,
    ErrorMessage,
    FrameReader,
    Have,
    HaveEnd,
    Hello,
    decode_message,
    frame_message,
    max_frame_for,
)
from agent.transport import AsyncioStream

from .conftest import LICHEN, run_lichen
from .helpers.mesh import MemoryNet, mesh_nodes
from .helpers.nodes import Node, accept_all, open_node

HOSTILE = Identity(b"\x66" * 32)
HONEST = Identity(b"\x67" * 32)
# HELLO of protocol version 2: a frame every node must refuse (tests/vectors)
HELLO_V2 = bytes.fromhex(
    "2d86000258208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c65626f6172640002"
)


async def messages_until_closed(channel: Channel) -> AsyncIterator[object]:
    reader = FrameReader(max_frame_for(16 * 1024))
    while data := await channel.receive():
        reader.feed(data)
        while (body := reader.next_frame()) is not None:
            yield decode_message(body)


async def test_a_protocol_error_is_answered_with_error_and_penalised(tmp_path: Path) -> None:
    net = MemoryNet()
    (mesh,) = await mesh_nodes(tmp_path, 1, net)
    mesh.trust.add(str(HOSTILE.node_id))
    await mesh.gossip.start()
    try:
        await mesh.node.append(3)
        ours, theirs = net.link.pair(names=("mem://hostile", mesh.address))
        await mesh.transport.incoming.put(theirs)  # the hostile peer dials the node
        channel = await open_channel(ours, HOSTILE, initiator=True, trust=accept_all, timeout=10)
        await channel.send(HELLO_V2)
        heard = []
        async with asyncio.timeout(20):
            async for message in messages_until_closed(channel):
                heard.append(message)
        errors = [m for m in heard if isinstance(m, ErrorMessage)]
        assert errors, f"the node closed without ERROR; it said {heard}"
        assert "the peer speaks sync protocol version 2" in errors[-1].reason
        hostile = str(HOSTILE.node_id)
        async with asyncio.timeout(20):  # the session's end is recorded after its stream closed
            while (record := mesh.gossip.book.get(hostile)) is None or not record.failures:
                await asyncio.sleep(0.01)
        assert record.penalty > 0, record
        assert "version 2" in (record.last_error or "")
        await channel.close()
    finally:
        await mesh.close()


# ------------------------------------------------------- a peer that never reads

RSS_LIMIT = 20 * 1024 * 1024  # what the node may grow by under the hostile peer
HAVES_PER_ROUND = 2000
MAX_ROUNDS = 400  # ~70 MB of offers: far more than any bound the node keeps


def rss(pid: int) -> int:
    """The resident set of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def dial(port: int, identity: Identity, *, receive_buffer: int | None = None) -> Channel:
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    stream = AsyncioStream(reader, writer, peer=f"tcp://127.0.0.1:{port}")
    return await open_channel(stream, identity, initiator=True, trust=accept_all, timeout=20)


async def never_reading_peer(port: int, enough: Callable[[], bool]) -> tuple[int, str]:
    """Offer the node rounds of 2 000 feeds it lacks, round after round, and never
    read a byte of its answers. Returns the rounds sent, and how it ended."""
    channel = await dial(port, HOSTILE, receive_buffer=16 * 1024)
    offer = b"".join(
        frame_message(
            Have(author=os.urandom(32), from_seq=1, to_seq=1000, head_hash=os.urandom(32))
        )
        for _ in range(HAVES_PER_ROUND)
    )
    sent = 0
    try:
        await channel.send(
            frame_message(Hello(node=HOSTILE.node_id.key, role="mule", since=0, change=0))
            + frame_message(DEFAULT_WINDOW)
        )
        for change in range(1, MAX_ROUNDS + 1):
            if enough():
                return sent, "stopped: the node grew too much"
            # a round as a peer that read the node's WANT_END would send it
            await channel.send(
                offer + frame_message(HaveEnd(change=change)) + frame_message(Done(change=change))
            )
            sent += 1
        return sent, "sent every round"
    except ChannelError as exc:
        return sent, f"the node closed the link: {exc}"
    finally:
        await channel.close()


async def honest_sync(port: int, node: Node) -> SessionReport:
    channel = await dial(port, node.identity)
    return await SyncSession(channel, node.log, node.identity.node_id).run()


def start_node(home: Path, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("LICHEN_HOME", None)
    return subprocess.Popen(
        [str(LICHEN), "--home", str(home), "run", "--listen", f"tcp://127.0.0.1:{port}"],
        stdout=(home / "agent.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


async def wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    async with asyncio.timeout(60):
        while True:
            assert process.poll() is None, "the node exited"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@pytest.mark.slow
async def test_a_peer_that_never_reads_cannot_grow_the_node_and_honest_peers_still_sync(
    tmp_path: Path,
) -> None:
    home, port = tmp_path / "node", free_port()
    run_lichen("init", "--board", "generic", "--name", "node", home=home)
    with (home / "lichen.toml").open("a") as toml:
        toml.write("\n[mesh]\nstall_timeout = 5.0\n")
    for peer in (HOSTILE, HONEST):
        run_lichen("trust", "add", str(peer.node_id), home=home)
    honest = await open_node(tmp_path / "honest.db", HONEST)
    process = start_node(home, port)
    try:
        await wait_listening(port, process)
        await honest.append(200)
        first = await honest_sync(port, honest)  # warms the node up: code loaded, caches filled
        assert first.ok and first.entries_sent == 200, first
        baseline = peak = rss(process.pid)

        def grown_too_much() -> bool:
            nonlocal peak
            peak = max(peak, rss(process.pid))
            return peak - baseline > RSS_LIMIT

        async def sample() -> None:
            while True:
                grown_too_much()
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            await honest.append(300)
            async with asyncio.timeout(120):
                (rounds, ending), during = await asyncio.gather(
                    never_reading_peer(port, grown_too_much), honest_sync(port, honest)
                )
            grown_too_much()
        finally:
            sampler.cancel()
        print(
            f"hostile: {rounds} rounds ({ending}); node RSS {baseline / 2**20:.1f} MiB, "
            f"peak {peak / 2**20:.1f} MiB (+{(peak - baseline) / 2**20:.1f})"
        )
        assert peak - baseline < RSS_LIMIT, (
            f"the node grew by {(peak - baseline) / 2**20:.1f} MiB under a peer that never "
            f"reads ({rounds} rounds sent, {ending})"
        )
        assert during.ok and during.entries_sent == 300, during
        again = await honest_sync(port, honest)  # and after it
        assert again.ok, again
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        await honest.close()
    log = (home / "agent.log").read_text()
    assert code == 0, log[-3000:]
    peers = {p["node"]: p for p in json.loads((home / "state" / "peers.json").read_text())["peers"]}
    hostile = peers[str(HOSTILE.node_id)]
    assert hostile["failures"] >= 1 and hostile["penalty"] > 0, hostile
