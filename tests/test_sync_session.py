"""The sync session over real SQLite logs and a real Noise channel."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
from pathlib import Path
from typing import Any

from agent.channel import open_channel
from agent.identity import Identity
from agent.mesh.session import SessionReport, SyncSession
from agent.store.log_store import LogStore
from agent.sync import Credit, Hello, SyncConnection, Want, WantEnd, frame_message
from agent.transport import AsyncioStream

from .helpers.nodes import Node, accept_all, open_node, run_sessions


async def test_two_logs_converge_and_a_repeat_sync_sends_nothing(tmp_path: Path) -> None:
    a = await open_node(tmp_path / "a.db")
    b = await open_node(tmp_path / "b.db")
    try:
        await a.append(1200)
        await b.append(300)
        ra, rb = await run_sessions(a, b)
        assert ra.ok and rb.ok, (ra, rb)
        assert ra.clean and rb.clean
        assert a.keys() == b.keys() and len(a.keys()) == 1500
        assert (ra.entries_sent, ra.entries_stored) == (1200, 300)
        assert (rb.entries_sent, rb.entries_stored) == (300, 1200)
        assert ra.duplicates == rb.duplicates == 0
        # checkpoints were stored: a second session sends no entry at all
        ra2, rb2 = await run_sessions(a, b)
        assert ra2.ok and rb2.ok
        assert ra2.entries_sent == rb2.entries_sent == 0
        assert ra2.sync_bytes_sent < 200, ra2
        # one new entry: only it travels
        await a.append(1)
        ra3, rb3 = await run_sessions(a, b)
        assert (ra3.entries_sent, rb3.entries_stored, rb3.entries_sent) == (1, 1, 0)
    finally:
        await a.close()
        await b.close()
    with LogStore(tmp_path / "b.db") as store:
        assert store.replication.checkpoint(a.identity.node_id.key) > 0


class RefuseCollection:
    """An access policy under which nobody writes ``collection`` here."""

    def __init__(self, collection: str) -> None:
        self.collection = collection

    def may_read(self, peer: bytes, collection: str) -> bool:
        return True

    def may_write(self, author: bytes, collection: str, seq: int) -> bool:
        return collection != self.collection


async def test_entries_the_policy_refuses_are_counted_and_the_sync_goes_on(
    tmp_path: Path,
) -> None:
    a = await open_node(tmp_path / "a.db")
    b = await open_node(tmp_path / "b.db")
    try:
        await a.append(30, collection="readings/sim")
        await a.append(20, collection="secret")
        await a.append(30, collection="readings/sim")
        ra, rb = await run_sessions(a, b, policy=RefuseCollection("secret"))
        assert ra.ok and rb.ok and ra.clean and rb.clean, (ra, rb)
        assert (rb.entries_received, rb.entries_refused, rb.entries_stored) == (80, 20, 60)
        assert not rb.protocol_error and not ra.protocol_error
        kept = {e.collection for e in b.reader.feed(a.identity.node_id.key)}
        assert kept == {"readings/sim"}
        # the round's checkpoint passed them: they are not offered again
        ra2, rb2 = await run_sessions(a, b, policy=RefuseCollection("secret"))
        assert ra2.ok and ra2.entries_sent == 0 and rb2.entries_refused == 0
    finally:
        await a.close()
        await b.close()


class WatchedStream:
    """A stream that says when one of its sends and one of its receives are waiting."""

    def __init__(self, inner: AsyncioStream) -> None:
        self.inner = inner
        self.sending = self.receiving = 0
        self.max_frame_hint, self.peer = inner.max_frame_hint, inner.peer

    async def send(self, data: bytes) -> None:
        self.sending += 1
        try:
            await self.inner.send(data)
        finally:
            self.sending -= 1

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self.receiving += 1
        try:
            return await self.inner.receive(max_bytes)
        finally:
            self.receiving -= 1

    async def close(self) -> None:
        await self.inner.close()


async def reset_under_a_blocked_session(node: Node, held: int) -> SessionReport:
    """A peer over TCP that asks for the node's whole feed, never reads, then resets
    the connection while the node's session waits to send and to receive."""
    streams: asyncio.Queue[WatchedStream] = asyncio.Queue()

    async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await streams.put(WatchedStream(AsyncioStream(r, w)))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hostile = Identity.generate()
        watched = await streams.get()
        ours, theirs = await asyncio.gather(
            open_channel(watched, node.identity, initiator=False, trust=accept_all),
            open_channel(AsyncioStream(r, w), hostile, initiator=True, trust=accept_all),
        )
        session = SyncSession(ours, node.log, node.identity.node_id)
        run = asyncio.create_task(session.run())
        conn = SyncConnection()
        conn.send_all(
            [Hello(node=hostile.node_id.key, role="mule"), Credit(entries=100_000, bytes=2**31)]
        )
        await theirs.send(
            conn.data_to_send()
            + frame_message(Want(author=node.identity.node_id.key, from_seq=1, to_seq=held))
            + frame_message(WantEnd())
        )
        async with asyncio.timeout(20):
            while not (watched.sending and watched.receiving):
                await asyncio.sleep(0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()  # a TCP reset: the node's send and receive both fail
        async with asyncio.timeout(20):
            return await run
    finally:
        server.close()
        await server.wait_closed()


async def test_a_link_reset_under_a_blocked_session_leaves_no_unretrieved_exception(
    tmp_path: Path,
) -> None:
    node = await open_node(tmp_path / "a.db")
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        await node.append(2000, size=400)
        for _ in range(3):
            report = await reset_under_a_blocked_session(node, 2000)
            assert report.error is not None and "link failed" in report.error, report
            gc.collect()
            await asyncio.sleep(0)
        assert not unhandled, [(c.get("message"), c.get("exception")) for c in unhandled]
    finally:
        loop.set_exception_handler(previous)
        await node.close()
