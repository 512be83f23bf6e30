"""The mule exchange: a phone's whole round, against limits measured in the same run.

A board's log of reading batches is served by the mule exchange
(:class:`agent.mule.api.MuleApi` on a real loopback HTTP server), and a
keyless client — the phone — collects it in sealed bundles of a 1 MiB
budget, uploads each to a cloud's ``POST /v1/bundles`` (a real
:class:`~agent.cloud.bundles.BundleIntake` over the SQLite ingestor, every
entry verified and stored) and hands the receipts back to the board. Printed:

* exchange entries/s (board → phone → cloud → receipts back, end to end)
  against the raw Ed25519 verify rate (the cloud verifies every entry once
  per pass);
* bytes per reading over the exchange (every bundle's bytes, sealed) against
  the entries' own bytes per reading.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import tempfile
import time
import urllib.parse
from pathlib import Path

from nacl.signing import SigningKey

from agent.bundle.seal import Opener
from agent.cloud.api import CloudApi
from agent.cloud.bundles import BundleIntake
from agent.cloud.ingest import sqlite_ingestor
from agent.entry import Entry
from agent.http import HttpServer
from agent.identity import Identity
from agent.mule.api import MuleApi, MuleRules
from agent.node import Node

from .bundle_bench import _board_log
from .common import Result, best_rate
from .log_bench import READINGS_PER_ENTRY

BUDGET = 1024 * 1024


def _request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _phone(board_port: int, cloud_port: int) -> tuple[int, int]:
    """Collect everything, upload it, hand the last receipts back: (entries, bundle bytes)."""
    since, entries, size, handover = "", 0, 0, b""
    while True:
        query = urllib.parse.urlencode({"since": since, "budget": BUDGET})
        status, headers, bundle = _request(board_port, "GET", f"/mule/v1/bundle?{query}")
        assert status == 200, bundle[:200]
        size += len(bundle)
        status, _, answer = _request(cloud_port, "POST", "/v1/bundles", bundle)
        assert status == 200, answer[:300]
        report = json.loads(answer)
        entries += report["stored"]
        if report["receipts"]["handover"]:
            handover = base64.b64decode(report["receipts"]["handover"])
        since = headers["lichen-cursor"]
        if headers["lichen-complete"] == "1":
            break
    status, _, answer = _request(board_port, "POST", "/mule/v1/handover", handover)
    assert status == 200, answer[:300]
    return entries, size


async def _exchange(root: Path, board: Identity, cloud: Identity) -> tuple[int, int, float]:
    async def took(_entries: list[Entry]) -> None:
        return None

    cloud_key = cloud.node_id.key
    async with Node(root / "board.db", board) as node:
        api = MuleApi(node, MuleRules(max_budget=BUDGET), clouds=lambda: frozenset({cloud_key}),
                      seal_to=lambda: cloud_key, took=took)  # fmt: skip
        board_server = HttpServer(api, "127.0.0.1", 0, max_body=1 << 20)
        async with sqlite_ingestor(root / "cloud.db", cloud) as ingestor:
            intake = BundleIntake(ingestor, Opener(cloud), root / "uploads")
            cloud_api = CloudApi(ingestor.sink.reader, dict, intake)
            cloud_server = HttpServer(cloud_api, "127.0.0.1", 0, max_body=4 * BUDGET)
            await board_server.start()
            await cloud_server.start()
            try:
                started = time.perf_counter()
                entries, size = await asyncio.to_thread(
                    _phone, board_server.port, cloud_server.port
                )
                elapsed = time.perf_counter() - started
            finally:
                await board_server.close()
                await cloud_server.close()
    return entries, size, elapsed


def bench_mule(quick: bool) -> list[Result]:
    count = 2_000 if quick else 10_000
    key = SigningKey.generate()
    signed = key.sign(b"\x5a" * 220)  # about one entry's content
    verify_key = key.verify_key

    def verify(n: int) -> None:
        for _ in range(n):
            verify_key.verify(signed)

    board, cloud = Identity.generate(), Identity.generate()
    verify_rate = rate = 0.0
    size = entry_bytes = 0
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            entry_bytes = _board_log(root / "board.db", board, count)
            verify_rate = max(verify_rate, best_rate(verify, count, repeats=1))
            entries, size, elapsed = asyncio.run(_exchange(root, board, cloud))
            assert entries == count, entries
            rate = max(rate, count / elapsed)
    readings = count * READINGS_PER_ENTRY
    return [
        Result("mule", "exchange entries/s", rate, "/s", "raw verify/s", verify_rate, "≥ 0.2"),
        Result(
            "mule",
            "exchange bytes per reading",
            size / readings,
            "B",
            "entry B/reading",
            entry_bytes / readings,
            "≤ 1.05",
        ),
    ]
