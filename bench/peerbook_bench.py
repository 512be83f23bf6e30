"""The peer book with 1 000 peers: TinyDB (plain and with its CachingMiddleware)
against Lichen's dict-plus-atomic-JSON book, measured side by side.

Each run records 1 000 peers, then one sighting of every peer (the agent's
common operation), and reports milliseconds per operation. TinyDB is only a
development dependency: this benchmark is why it is not a runtime one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from agent.mesh.peerbook import PeerBook

from .common import Result

PEERS = 1000


def _node(i: int) -> str:
    return f"lc1{i:055d}"


def _tinydb(path: Path, cached: bool) -> tuple[float, float]:
    from tinydb import Query, TinyDB
    from tinydb.middlewares import CachingMiddleware
    from tinydb.storages import JSONStorage

    db = TinyDB(path, storage=CachingMiddleware(JSONStorage) if cached else JSONStorage)  # type: ignore[no-untyped-call]
    peer = Query()
    started = time.perf_counter()
    for i in range(PEERS):
        db.upsert(
            {
                "node": _node(i),
                "addresses": {"tcp": [f"tcp://10.0.0.{i % 250}:7400"]},
                "last_seen_ms": i,
            },
            peer.node == _node(i),
        )
    recorded = time.perf_counter()
    for i in range(PEERS):
        db.update({"last_seen_ms": i + 1}, peer.node == _node(i))
    sighted = time.perf_counter()
    db.close()
    return (recorded - started) / PEERS, (sighted - recorded) / PEERS


def _peerbook(path: Path) -> tuple[float, float]:
    book = PeerBook(path)
    started = time.perf_counter()
    for i in range(PEERS):
        book.seen(_node(i), f"tcp://10.0.0.{i % 250}:7400")
    book.flush()
    recorded = time.perf_counter()
    for i in range(PEERS):
        book.seen(_node(i))
    book.flush()
    sighted = time.perf_counter()
    return (recorded - started) / PEERS, (sighted - recorded) / PEERS


def bench_peerbook(quick: bool) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ours = _peerbook(base / "peers.json")
        cached = _tinydb(base / "cached.json", cached=True)
        plain = _tinydb(base / "plain.json", cached=False) if not quick else (float("nan"),) * 2
    ms = 1000.0
    return [
        Result(
            "peerbook",
            "ms per sighting, 1000 peers",
            ours[1] * ms,
            "ms",
            "TinyDB cached",
            cached[1] * ms,
            "",
        ),
        Result(
            "peerbook",
            "ms per new peer, 1000 peers",
            ours[0] * ms,
            "ms",
            "TinyDB cached",
            cached[0] * ms,
            "",
        ),
        Result(
            "peerbook",
            "TinyDB uncached ms per sighting",
            plain[1] * ms,
            "ms",
            "TinyDB cached",
            cached[1] * ms,
            "",
        ),
    ]
