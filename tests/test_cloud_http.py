"""The cloud's HTTP API as an attacker or a careless client would meet it.

* Beyond loopback it serves only with an access token (a bearer header).
* A client that asks for a large CSV export and stops reading is dropped
  within ``[cloud] http_timeout``, and the read cursor it held is released:
  SQLite can checkpoint the log again (a real socket, a real `lichen cloud`).
* CSV cells a spreadsheet would run as formulas are escaped; numbers, negative
  ones too, stay numbers.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import sqlite3
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from agent.identity import Identity
from agent.readings import FieldSpec, Reading, encode_reading_batch
from agent.store.log_store import LogStore
from agent.uplink.wire import Topics, encode_entry_batch

from .conftest import run_lichen, seeded_identity
from .helpers.broker import Broker
from .helpers.cloud import BASE_MS, Feed, TestClient, http_get, make_cloud_home, start_cloud
from .test_cloud_ingest import Cloud, up

TOKEN = "s3cret-token-of-some-length-0123456789"


@pytest.mark.slow
def test_serving_beyond_loopback_needs_an_access_token(tmp_path: Path, mosquitto: Broker) -> None:
    home = tmp_path / "cloud"
    make_cloud_home(home)
    refused = run_lichen("cloud", "--broker", mosquitto.url, "--http", "0.0.0.0:0",
                         home=home, check=False, timeout=20)  # fmt: skip
    assert refused.returncode == 2, refused
    assert "http_token" in refused.stderr and "Fix:" in refused.stderr
    (home / "lichen.toml").write_text(
        (home / "lichen.toml").read_text() + f'http_token = "{TOKEN}"\n'
    )
    with start_cloud(home, "--broker", mosquitto.url, "--http", "0.0.0.0:0") as cloud:
        port = cloud.status()["cloud"]["http"].rpartition(":")[2]
        url = f"http://127.0.0.1:{port}"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            request = urllib.request.Request(url + "/v1/feeds", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=10)
            assert info.value.code == 401
            assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
        request = urllib.request.Request(
            url + "/v1/feeds", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and "feeds" in json.loads(response.read())
        cloud.wait(lambda: cloud.status()["cloud"]["http_clients"]["refused"] == 3,
                   what="the refusals counted")  # fmt: skip


def _fill(home: Path, board: Feed, entries: int, per_entry: int) -> None:
    """``entries`` reading batches of ``per_entry`` readings each in the cloud's log."""
    fields = {"temperature": FieldSpec("°C", 0.01), "humidity": FieldSpec("%", 0.1)}
    for seq in range(1, entries + 1):
        start = BASE_MS + seq * 1_000_000
        readings = [Reading(start + i * 1000, {"temperature": 20 + i / 100, "humidity": 40.5})
                    for i in range(per_entry)]  # fmt: skip
        board.add(body=encode_reading_batch(readings, fields))
    with LogStore(home / "log.db") as store:
        store.batch([partial(store.insert_now, e) for e in board.entries])


def _checkpoint_blocked(database: Path) -> bool:
    """Whether a reader keeps SQLite from resetting the write-ahead log."""
    conn = sqlite3.connect(database, timeout=0.1)
    try:
        (busy, _log, _done) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy)
    finally:
        conn.close()


@pytest.mark.slow
def test_a_client_that_stops_reading_is_dropped_and_its_cursor_released(
    tmp_path: Path, mosquitto: Broker
) -> None:
    home = tmp_path / "cloud"
    board = Feed(seeded_identity(80))
    make_cloud_home(home, "http_timeout = 2", trust=[board.node])
    _fill(home, board, entries=400, per_entry=200)  # about 8 MB of CSV
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        host, _, port = cloud.status()["cloud"]["http"].rpartition(":")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        stalled.sendall(b"GET /v1/readings.csv HTTP/1.1\r\nHost: cloud\r\n\r\n")
        try:
            cloud.wait(lambda: cloud.health()["http_clients"]["streaming"] == 1,
                       what="the export to stream")  # fmt: skip
            # a board goes on uploading meanwhile: the log grows past the reader's snapshot
            more = board.add()
            client = TestClient(mosquitto.port)
            try:
                client.publish(up_topic(board), encode_entry_batch([more.raw]))
            finally:
                client.close()
            cloud.wait(lambda: cloud.health()["entries_stored"] == 1, what="the new entry")
            assert _checkpoint_blocked(home / "log.db")  # the stalled export pins the log
            cloud.wait(lambda: cloud.health()["http_clients"]["dropped"] == 1, timeout=30,
                       what="the stalled client to be dropped")  # fmt: skip
            health = cloud.health()["http_clients"]
            assert health["streaming"] == 0
            cloud.wait(lambda: not _checkpoint_blocked(home / "log.db"),
                       what="the cursor to be released")  # fmt: skip
            assert "stopped reading" in cloud.log()
            # the server closed the connection: what was buffered drains, then it ends
            stalled.settimeout(10)
            with pytest.raises(ConnectionResetError):
                while stalled.recv(65536):
                    pass
                raise ConnectionResetError  # an orderly end is as good
        finally:
            stalled.close()
        code, _, _ = http_get(cloud.http + "/health")
        assert code == 200  # and it goes on serving


def up_topic(board: Feed) -> str:
    return Topics("farm", board.node).up


async def test_csv_cells_a_spreadsheet_would_run_are_escaped(tmp_path: Path) -> None:
    from agent.cloud.api import CloudApi
    from agent.http import HttpServer

    cloud = await Cloud(tmp_path / "cloud.db").start()
    board = Feed(Identity.generate())
    dangerous = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "ok"]
    readings = [
        Reading(BASE_MS + i, {"note": text, "level": -1.5 - i, "count": -i, "=cmd": 1},
                quality="@bad" if i == 0 else None)
        for i, text in enumerate(dangerous)
    ]  # fmt: skip
    board.add(body=encode_reading_batch(readings, {}))
    await cloud.ingest(up(board), encode_entry_batch(board.raws(1)))
    server = HttpServer(CloudApi(cloud.sink.reader, lambda: {"running": True}), "127.0.0.1", 0)
    await server.start()
    try:
        import asyncio

        url = f"http://127.0.0.1:{server.port}/v1/readings.csv"
        code, body, _ = await asyncio.to_thread(http_get, url)
    finally:
        await server.close()
        await cloud.close()
    assert code == 200
    table = list(csv.reader(io.StringIO(body.decode())))
    header, rows = table[0], table[1:]
    assert header == ["ts_ms", "node", "collection", "'=cmd", "count", "level", "note",
                      "quality"]  # fmt: skip
    notes = [row[header.index("note")] for row in rows]
    assert notes == ["'" + t for t in dangerous[:-1]] + ["ok"]
    assert [row[header.index("level")] for row in rows] == [str(-1.5 - i) for i in range(7)]
    assert [row[header.index("count")] for row in rows] == [str(-i) for i in range(7)]
    assert rows[0][header.index("quality")] == "'@bad"
    # every text cell is quoted, numbers are not (a spreadsheet reads them as numbers)
    first = body.decode().splitlines()[1]
    assert first.startswith(f'{BASE_MS},"{board.node}","readings/climate",')
    assert ",-1.5," in first and ",0," in first
