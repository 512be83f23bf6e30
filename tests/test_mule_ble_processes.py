"""The mule exchange over BLE from a real `lichen run` board ([mule] ble = true,
listening on BLE through emulated controllers served by `lichen ble
controllers`, paced at 20 kB/s as a phone's link might carry): this test is
the keyless phone, a central opening a link in mule mode. It reads the
board's info, collects its backlog in sealed bundles that the cloud's key
opens and imports whole, and hands a receipt back, which the board applies."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from lichen_ble import BleConfig, BleTransport
from lichen_ble.segments import Mode

from agent.bundle.importer import import_into_store
from agent.bundle.seal import Opener
from agent.clock import pack
from agent.entry import sign_entry
from agent.http_stream import StreamHttpClient
from agent.identity import Identity, NodeId
from agent.store.log_store import LogStore
from agent.testing import FakeTransportContext
from agent.uplink.wire import ACKS_COLLECTION, ack_body, encode_entry_batch

from .conftest import LICHEN, run_lichen
from .helpers.agents import can_connect, free_port, make_nodes, node_id, start, stop, wait_for
from .test_ble_processes import add_ble, fill

pytestmark = pytest.mark.slow

BACKLOG = 400  # entries of about 250 bytes: some 100 kB, 5 s at 20 kB/s
RATE = 20000


async def visit(port: int, board_id: str, cloud: Identity, tmp_path: Path) -> dict[str, float]:
    """Be the phone: collect everything in bundles of 32 KiB, hand a receipt back."""
    phone = Identity.generate()
    context = FakeTransportContext(str(phone.node_id), name="phone")
    ble = BleTransport(BleConfig(name="ble", hci=f"tcp-client:127.0.0.1:{port}",
                                 listen=False), context)  # fmt: skip
    await ble.start()
    cloud_store = LogStore(tmp_path / "cloud.db")
    try:
        started = time.monotonic()
        stream = await ble.dial(f"ble://{board_id}", Mode.MULE)
        opened = time.monotonic()
        client = StreamHttpClient(stream)
        info = json.loads((await client.request("GET", "/mule/v1/info")).body)
        assert info["node_id"] == board_id and info["sealed_to"] == str(cloud.node_id)
        cursor, carried, size, complete = "", 0, 0, False
        while not complete:
            answer = await client.request("GET", f"/mule/v1/bundle?since={cursor}&budget=32768")
            assert answer.status == 200, answer.body
            path = tmp_path / f"bundle-{carried}.lcb"
            path.write_bytes(answer.body)
            size += len(answer.body)
            carried += import_into_store(path, cloud_store, opener=Opener(cloud)).stored
            cursor = answer.headers["lichen-cursor"]
            complete = answer.headers["lichen-complete"] == "1"
        collected = time.monotonic()
        head = cloud_store.head(NodeId.parse(board_id).key)
        assert head is not None and carried >= BACKLOG and head.seq == carried
        receipt = sign_entry(cloud, seq=1, prev=None, ts=pack(1_800_000_000_000),
                             collection=ACKS_COLLECTION, body=ack_body(head.seq),
                             doc_id=board_id)  # fmt: skip
        handed = await client.request(
            "POST", "/mule/v1/handover", encode_entry_batch([receipt.raw])
        )
        assert handed.status == 200 and json.loads(handed.body)["acked"] == {board_id: head.seq}
        await stream.close()
        return {
            "entries": carried,
            "bytes": size,
            "open_s": opened - started,
            "collect_s": collected - opened,
            "bytes_per_s": size / (collected - opened),
        }
    finally:
        cloud_store.close()
        await ble.close()


def test_a_phone_collects_a_boards_backlog_over_ble_and_hands_the_receipt_back(
    tmp_path: Path,
) -> None:
    [board] = make_nodes(tmp_path, 1, board="sim")
    cloud = Identity.generate()
    p_board, p_phone = free_port(), free_port()
    add_ble(board, p_board, scan=False)
    with (board / "lichen.toml").open("a") as f:
        f.write(f'\n[retention]\nack_from = ["{cloud.node_id}"]\n\n[mule]\nble = true\n')
    asyncio.run(fill(board, BACKLOG))
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    relay = subprocess.Popen(
        [str(LICHEN), "ble", "controllers", f"tcp-server:127.0.0.1:{p_board}",
         f"tcp-server:127.0.0.1:{p_phone}", "--rate", str(RATE)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    processes: list[subprocess.Popen[str]] = [relay]  # type: ignore[list-item]
    try:
        wait_for("the controllers", lambda: can_connect(p_board) and can_connect(p_phone))
        board_run = start(board, "--listen", "ble:")
        processes.append(board_run)
        log = board / "agent.log"
        wait_for("the board serving the exchange", lambda: "mule exchange serving" in
                 log.read_text(), log=log, process=board_run)  # fmt: skip
        measured = asyncio.run(visit(p_phone, node_id(board), cloud, tmp_path))

        def status() -> str | None:
            text = run_lichen("status", home=board, check=False).stdout
            return text if "1 handovers" in text else None

        line = wait_for("the handover in lichen status", status, timeout=30)
        assert "mule      BLE, sealed to" in line, line
    finally:
        stop(processes)
    print(json.dumps({k: round(v, 2) for k, v in measured.items()}))
    assert measured["bytes_per_s"] > RATE / 10  # the link is not the bottleneck's tenth
