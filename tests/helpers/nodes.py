"""Nodes in one process for sync tests: a real SQLite log, its writer, a read
connection (:class:`agent.node.Node`), and a function that runs two sessions
over any stream pair."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import node as node_module
from agent.channel import open_channel
from agent.identity import Identity
from agent.link_api import Stream
from agent.mesh.session import SessionLog, SessionReport, SyncSession
from agent.store.log_store import Draft
from agent.transport import memory_stream_pair

__all__ = ["Node", "open_node", "run_sessions"]


class Node(node_module.Node):
    """A started node with what sync tests ask of it."""

    @property
    def path(self) -> Path:
        return self.database

    @property
    def log(self) -> SessionLog:
        return SessionLog(self.reader, self.writer)

    async def append(self, n: int, collection: str = "readings/sim", size: int = 40) -> None:
        """``n`` entries of about ``size`` body bytes, in groups of 500."""
        for start in range(0, n, 500):
            drafts = [
                Draft(collection, {"i": i, "pad": "x" * size})
                for i in range(start, min(n, start + 500))
            ]
            await self.writer.append_many(drafts)

    def keys(self) -> set[tuple[bytes, int]]:
        return {
            (bytes(a), s)
            for a, s in self.reader.connection.execute(
                "SELECT f.author, e.seq FROM entries e JOIN feeds f ON f.id = e.feed"
            )
        }


async def open_node(path: Path, identity: Identity | None = None) -> Node:
    node = Node(path, identity or Identity.generate())
    await node.start()
    return node


def accept_all(_peer: Any) -> None:
    return None


async def run_sessions(
    a: Node,
    b: Node,
    *,
    streams: Callable[[], tuple[Stream, Stream]] = memory_stream_pair,
    live: bool = False,
    timeout: float = 60.0,
    **options: Any,
) -> tuple[SessionReport, SessionReport]:
    """Open a channel between ``a`` (initiator) and ``b`` and run one session each."""
    left, right = streams()
    ca, cb = await asyncio.gather(
        open_channel(left, a.identity, initiator=True, trust=accept_all),
        open_channel(right, b.identity, initiator=False, trust=accept_all),
    )
    sa = SyncSession(ca, a.log, a.identity.node_id, live=live, **options)
    sb = SyncSession(cb, b.log, b.identity.node_id, live=live, **options)
    async with asyncio.timeout(timeout):
        ra, rb = await asyncio.gather(sa.run(), sb.run())
    return ra, rb
