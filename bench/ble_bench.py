"""BLE benchmarks: a board and a phone on Bumble emulated controllers, the radio
paced to 20 kB/s per direction (a good phone ⇄ Pi GATT link), everything real
above it — the link core, the Noise channel, the sync session, SQLite.

* ``readings/s`` of a one-shot sync of 40 minutes of a board's 10 Hz float
  sensor (declared resolution 0.01, one entry per 10 s or 1 s flush; 10
  minutes with ``--quick``), from dialling to both BYEs, against the link's
  capacity (20 kB/s) divided by the bytes each reading costs board → phone
  (target ≥ 0.9: link protocol, channel and sync keep the radio busy);
* wire bytes per reading on BLE: every L2CAP byte both ways (ATT headers,
  link segments, acknowledgements, channel, sync) per reading delivered, for
  a 10 s and a 1 s flush (target ≤ 12 B at 10 s);
* a repeat contact: from the advertisement with the board's new digest seen
  by the phone to the first new entry stored there (connect, GATT discovery,
  link, Noise handshake, sync round), against a bare GATT connect + discovery
  + read on the same link.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from lichen_ble import BleConfig, BleTransport
from lichen_ble.bumble_radio import register_local_link
from lichen_ble.controllers import make_link
from lichen_ble.service import INFO_UUID, digest_bytes

from agent.channel import open_channel
from agent.clock import HybridClock
from agent.identity import Identity
from agent.mesh import SessionLog, SyncSession
from agent.readings import encode_reading_batch
from agent.store.log_store import Draft, LogStore
from agent.store.writer import LogWriter

from .common import Result
from .log_bench import TEMPERATURE, _climate_readings

RATE = 20_000.0  # bytes/s per direction
HZ = 10
BOARD, PHONE = Identity(bytes([21]) * 32), Identity(bytes([22]) * 32)


class _Context:
    def __init__(self, identity: Identity, digest: Any) -> None:
        self.name, self.identity, self._digest = "ble", identity, digest
        import logging

        self.log = logging.getLogger("lichen.bench.ble")

    @property
    def node_id(self) -> str:
        return str(self.identity.node_id)

    def heads_digest(self) -> str:
        digest: str = self._digest()
        return digest


def _fill(path: Path, seconds: int, flush: int, start_s: int = 0) -> int:
    """``seconds`` of a 10 Hz sensor, one entry per ``flush`` seconds; readings added."""
    rng = random.Random(start_s)
    wall = [1_795_000_000_000 + start_s * 1000]
    clock = HybridClock(lambda: wall[0])
    readings = 0
    with LogStore(path) as store:
        drafts = []
        for _ in range(0, seconds, flush):
            batch = _climate_readings(wall[0], HZ * flush, 1000 // HZ, rng)
            wall[0] += flush * 1000
            readings += len(batch)
            drafts.append(Draft("readings/climate", encode_reading_batch(batch, TEMPERATURE)))
        store.append(BOARD, clock, drafts)
    return readings


async def _node(path: Path, identity: Identity) -> tuple[LogWriter, LogStore]:
    writer = LogWriter(lambda: LogStore(path), identity, HybridClock())
    await asyncio.get_running_loop().run_in_executor(None, writer.start)
    return writer, LogStore(path)


def _digest(reader: LogStore) -> str:
    from agent.mesh.links import heads_digest

    return heads_digest(reader)


async def _session(stream: Any, identity: Identity, log: SessionLog, *, initiator: bool,
                   on_stored: Any = None) -> Any:  # fmt: skip
    channel = await open_channel(stream, identity, initiator=initiator, trust=lambda _p: None)
    report = await SyncSession(channel, log, identity.node_id, on_stored=on_stored).run()
    if report.error:
        raise RuntimeError(f"the benchmark sync failed: {report.error}")
    return report


async def _contact(
    board: BleTransport, phone: BleTransport, board_log: SessionLog, phone_log: SessionLog,
    on_stored: Any = None,
) -> tuple[float, Any]:  # fmt: skip
    """One sync: the phone dials the board; seconds from dialling to both BYEs."""
    started = time.perf_counter()
    dialled = asyncio.ensure_future(phone.connect(f"ble://{BOARD.node_id}"))
    incoming = await board.accept()
    outgoing = await dialled
    _, report = await asyncio.gather(
        _session(incoming, BOARD, board_log, initiator=False),
        _session(outgoing, PHONE, phone_log, initiator=True, on_stored=on_stored),
    )
    return time.perf_counter() - started, report


async def _run(work: Path, seconds: int, flush: int) -> dict[str, float]:
    readings = _fill(work / "board.db", seconds, flush)
    link = make_link(rate=RATE)
    name = f"bench-{flush}-{seconds}"
    register_local_link(name, link)
    counted = _count_bytes(link)
    (b_writer, b_reader), (p_writer, p_reader) = (
        await _node(work / "board.db", BOARD),
        await _node(work / "phone.db", PHONE),
    )
    board = BleTransport(
        BleConfig(name="ble", hci=f"local:{name}", scan=False),
        _Context(BOARD, lambda: _digest(b_reader)),
    )
    phone = BleTransport(
        BleConfig(name="ble", hci=f"local:{name}", listen=False),
        _Context(PHONE, lambda: _digest(p_reader)),
    )
    out: dict[str, float] = {"readings": readings}
    try:
        await board.start()
        await phone.start()
        board_log, phone_log = SessionLog(b_reader, b_writer), SessionLog(p_reader, p_writer)
        counted.clear()
        counted["bytes"] = 0
        out["seconds"], _ = await _contact(board, phone, board_log, phone_log)
        sent = dict(counted)
        out["wire"] = sent.pop("bytes")
        out["forward"] = max(sent.values())  # board → phone: what the radio's rate bounds
        (held,) = p_reader.connection.execute("SELECT count(*) FROM entries").fetchone()
        if held != b_reader.totals()[0]:
            raise RuntimeError(f"the phone holds {held} entries of {b_reader.totals()[0]}")
        out["repeat"], out["bare"] = await _repeat(board, phone, board_log, phone_log)
    finally:
        await phone.close()
        await board.close()
        for writer, reader in ((b_writer, b_reader), (p_writer, p_reader)):
            await writer.close()
            reader.close()
    return out


async def _repeat(
    board: BleTransport, phone: BleTransport, board_log: SessionLog, phone_log: SessionLog
) -> tuple[float, float]:
    """The board flushes new readings; from the phone hearing the new digest to the
    first new entry stored; and a bare connect + discovery + info read."""
    loop = asyncio.get_running_loop()
    await board_log.writer.append_many([Draft("readings/climate", {"late": True})])
    board.heads_changed()
    new_digest = digest_bytes(_digest(board_log.reader))
    async with contextlib.aclosing(phone.sightings()) as sightings:
        async for _seen in sightings:
            nearby = next(iter(phone.nearby.values()))
            if nearby.advert.digest == new_digest:
                break
    heard = loop.time()
    first: list[float] = []

    def stored(_n: int) -> None:
        if not first:
            first.append(loop.time())

    await _contact(board, phone, board_log, phone_log, on_stored=stored)
    nearby = next(iter(phone.nearby.values()))
    started = loop.time()
    connection, service = await phone.radio._connect(nearby.address, 10.0)
    [info] = [c for c in service.characteristics if str(c.uuid).lower() == str(INFO_UUID)]
    await info.read_value()
    bare = loop.time() - started
    await phone.radio._hang_up(connection)
    return first[0] - heard, bare


def _count_bytes(link: Any) -> dict[Any, int]:
    """Count every L2CAP byte the link carries (plus 4 of header per PDU): in all
    (``"bytes"``) and per sending controller."""
    counter: dict[Any, int] = {"bytes": 0}
    send = link.send_acl_data

    def counting(sender: Any, destination: Any, transport: Any, data: bytes) -> None:
        counter["bytes"] += len(data) + 4
        counter[id(sender)] = counter.get(id(sender), 0) + len(data) + 4
        send(sender, destination, transport, data)

    link.send_acl_data = counting
    return counter


def bench_ble(quick: bool) -> list[Result]:
    seconds = 600 if quick else 2400
    results = []
    for flush in (10, 1):
        with tempfile.TemporaryDirectory() as tmp:
            out = asyncio.run(_run(Path(tmp), seconds, flush))
        per_reading = out["wire"] / out["readings"]
        rate = out["readings"] / out["seconds"]
        capacity = RATE / (out["forward"] / out["readings"])
        label = f"{flush} s flush"
        results += [
            Result("ble", f"wire B/reading, {label} vs target 12 B", per_reading, "B",
                   "target", 12.0, "≤ 1.0" if flush == 10 else ""),
            Result("ble", f"readings/s at 20 kB/s, {label}", rate, "/s",
                   "link capacity / B per reading", capacity, "≥ 0.9"),
            Result("ble", f"advert seen → first entry stored, {label}", out["repeat"], "s",
                   "bare connect+discover+read", out["bare"], ""),
        ]  # fmt: skip
    return results
