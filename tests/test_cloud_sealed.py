"""The cloud's API reads a sealed collection only where the cloud is one of its
readers: it stores the board's sealed entries as they come (signed ciphertext)
and opens them when it answers, with the key generation an admin sealed to it."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

from agent.cloud.api import CloudApi
from agent.cloud.fleet import CloudFleet, sealed_reader
from agent.fleet import COLLECTION, Keyring, fleet_id_of, op_body
from agent.fleet.sealing import generation_body, is_sealed_body
from agent.http import HttpServer
from agent.readings import Reading, encode_reading_batch
from agent.uplink.wire import encode_entry_batch

from .conftest import seeded_identity
from .helpers.cloud import BASE_MS, Feed, http_get
from .test_cloud_ingest import Cloud, up


def sealed_fleet(cloud_key: bytes, readers: list[bytes]) -> tuple[Feed, Feed, CloudFleet]:
    """An admin's fleet: a board in sensors, the cloud in ops, readings/* sealed to
    ``readers``; the cloud's fleet has learnt it."""
    admin, board = Feed(seeded_identity(70)), Feed(seeded_identity(71))
    genesis = admin.add(COLLECTION, op_body("create", name="farm"))
    fleet = fleet_id_of(genesis)
    for node, group in ((board.author, "sensors"), (cloud_key, "ops")):
        admin.add(COLLECTION, op_body("add", fleet, node, groups=[group]))
        admin.add(COLLECTION, op_body("approve", fleet, node))
    admin.add(COLLECTION, op_body("rule", fleet, collection="readings/*", write=["sensors"],
                                  read=["ops"], sealed=True))  # fmt: skip
    admin.add(COLLECTION, op_body("key", fleet, **generation_body("readings/*", 1, readers)))
    known = CloudFleet(fleet)
    known.learn(admin.entries)
    return admin, board, known


async def readings_csv(cloud: Cloud, fleet: CloudFleet) -> list[dict[str, str]]:
    api = CloudApi(cloud.sink.reader, lambda: {"running": True},
                   readable=sealed_reader(fleet, cloud.identity))  # fmt: skip
    server = HttpServer(api, "127.0.0.1", 0)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/v1/readings.csv"
        code, body, _ = await asyncio.to_thread(http_get, url)
    finally:
        await server.close()
    assert code == 200
    return list(csv.DictReader(io.StringIO(body.decode())))


async def test_a_cloud_that_reads_a_sealed_collection_opens_it_and_one_that_does_not_cannot(
    tmp_path: Path,
) -> None:
    for reads in (True, False):
        cloud = Cloud(tmp_path / f"cloud-{reads}.db")
        me = cloud.identity.node_id.key
        _admin, board, fleet = sealed_fleet(me, [me] if reads else [])
        readings = [Reading(BASE_MS + i, {"level": 40.5 + i}) for i in range(3)]
        batch = encode_reading_batch(readings, {})
        sealed = Keyring(board.identity).seal(fleet.membership, "readings/tank", batch)
        board.add("readings/tank", sealed)
        board.add("pumps", encode_reading_batch([Reading(BASE_MS, {"on": 1})], {}))
        await cloud.start()
        try:
            verdict = await cloud.ingest(up(board), encode_entry_batch(board.raws(1, 2)))
            assert not verdict.rejections
            stored = next(iter(cloud.reader.by_time("readings/tank")))
            assert is_sealed_body(stored.body)  # stored as it came, signed ciphertext
            rows = await readings_csv(cloud, fleet)
        finally:
            await cloud.close()
        tank = [r["level"] for r in rows if r["collection"] == "readings/tank"]
        assert tank == (["40.5", "41.5", "42.5"] if reads else [])
        assert [r["on"] for r in rows if r["collection"] == "pumps"] == ["1"]  # not sealed
