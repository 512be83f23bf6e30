"""Bulk appends (``lichen log append --ndjson``) against the writer they go through.

* bulk: NDJSON lines read, parsed, checked and appended (entries/s of CPU time)
  vs the same entries handed to ``LogWriter.append_many`` as ready drafts in
  batches of the same size — what reading and checking the lines costs on top
  of signing and storing them.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import time
from pathlib import Path

from agent.identity import Identity
from agent.ndjson import BATCH_LINES, append_ndjson
from agent.node import Node
from agent.store.log_store import Draft

from .common import Result

ROUNDS = 3


def _lines(count: int) -> bytes:
    rows = (
        {"collection": f"notes/{i % 8}", "body": {"n": i, "text": "pump serviced", "ok": True}}
        for i in range(count)
    )
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def _run(path: Path, data: bytes, drafts: list[Draft] | None) -> float:
    """CPU seconds to append ``data`` (or ``drafts``, when given) to a new log."""
    async with Node(path, Identity.generate()) as node:
        started = time.process_time()
        if drafts is None:
            report = await append_ndjson(io.BytesIO(data), node.writer)
            assert report.error is None and report.failure is None, report
        else:
            for i in range(0, len(drafts), BATCH_LINES):
                await node.writer.append_many(drafts[i : i + BATCH_LINES])
        return time.process_time() - started


def bench_bulk(quick: bool) -> list[Result]:
    count = 3_000 if quick else 20_000
    data = _lines(count)
    parsed = [json.loads(line) for line in data.splitlines()]
    bulk = reference = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(ROUNDS):
            drafts = [Draft(p["collection"], p["body"]) for p in parsed]
            seconds = asyncio.run(_run(Path(tmp) / f"ref{round_}.db", b"", drafts))
            reference = max(reference, count / seconds)
            seconds = asyncio.run(_run(Path(tmp) / f"bulk{round_}.db", data, None))
            bulk = max(bulk, count / seconds)
    return [
        Result(
            "bulk",
            "append --ndjson entries/s (CPU)",
            bulk,
            "e/s",
            "writer.append_many",
            reference,
            "≥ 0.7",
        )
    ]
