"""The mule exchange end to end, with real processes: a board (`lichen run
--mule-http`, simulated sensors), a cloud (`lichen cloud`, its HTTP API on
loopback; no broker is needed for bundles), and this test as the phone —
plain http.client, holding no keys. The phone collects sealed bundles, is cut
off mid-bundle and resumes from the last cursor it kept, uploads to the cloud,
takes the custody receipts back to the board, and the board prunes what they
cover. Hostile handovers and uploads are refused with their reason, and
nothing of them is stored."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.bundle.importer import read_manifest
from agent.clock import pack
from agent.cloud_feed import FROM_CLOUD
from agent.entry import decode_entry, sign_entry
from agent.identity import Identity, NodeId
from agent.uplink.wire import ACKS_COLLECTION, ack_body, decode_entry_batch, encode_entry_batch

from .conftest import run_lichen
from .helpers.agents import free_port, make_nodes, node_id, start, stop, wait_for
from .helpers.cloud import CloudProcess, make_cloud_home, start_cloud

pytestmark = pytest.mark.slow

BUNDLE = "application/vnd.lichen.bundle"


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


class Phone:
    """A keyless HTTP client: what a web app on a phone can do."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            headers = {"content-type": content_type} if content_type else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data)

    def bundle(self, since: str, budget: int, **extra: str) -> tuple[dict[str, str], bytes]:
        query = urllib.parse.urlencode({"since": since, "budget": budget, **extra})
        status, headers, data = self.request("GET", f"/mule/v1/bundle?{query}")
        assert status == 200, (status, data[:300])
        assert headers["content-type"] == BUNDLE
        return headers, data

    def cut_bundle(self, since: str, budget: int, after: int) -> bytes:
        """Start a bundle and walk out of range after ``after`` bytes."""
        query = urllib.parse.urlencode({"since": since, "budget": budget})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            conn.request("GET", f"/mule/v1/bundle?{query}")
            response = conn.getresponse()
            assert response.status == 200
            return response.read(after)
        finally:
            conn.close()


def mule_address(home: Path, process: subprocess.Popen[str]) -> str:
    def address() -> str | None:
        try:
            state = json.loads((home / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return None
        if state.get("pid") != process.pid or not state.get("mule"):
            return None
        return str(state["mule"]["address"])

    return wait_for("the mule exchange", address, log=home / "agent.log", process=process)


def own_seqs_held(home: Path, author: str) -> list[int]:
    key = NodeId.parse(author).key
    with sqlite3.connect(f"file:{home / 'log.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT e.seq FROM entries e JOIN feeds f ON f.id = e.feed JOIN collections c "
            "ON c.id = e.collection WHERE f.author = ? AND c.name LIKE 'readings/%' ORDER BY 1",
            (key,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def entries_by(home: Path, author: bytes) -> int:
    with sqlite3.connect(f"file:{home / 'log.db'}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM entries e JOIN feeds f ON f.id = e.feed WHERE f.author = ?",
            (author,),
        ).fetchone()
    return int(row[0])


def spans(path: Path, data: bytes) -> dict[str, tuple[int, int, int]]:
    path.write_bytes(data)
    _header, manifest = read_manifest(path)
    return {str(s.node_id): (s.first, s.last, s.count) for s in manifest.feeds}


def cloud_feeds(cloud: CloudProcess) -> dict[str, Any]:
    phone = Phone(cloud.http.removeprefix("http://"))
    status, body = phone.json("GET", "/v1/feeds")
    assert status == 200
    return {f["node_id"]: f for f in body["feeds"]}


def test_a_phone_carries_sealed_bundles_to_the_cloud_and_receipts_back(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    (board,) = make_nodes(tmp_path, 1, trust=False)
    me = node_id(board)
    cloud_home = tmp_path / "cloud"
    cloud_identity = make_cloud_home(
        cloud_home, f'broker = "mqtt://127.0.0.1:{free_port()}"', trust=[me]
    )
    cloud_id = str(cloud_identity.node_id)
    with (board / "lichen.toml").open("a") as f:
        f.write(
            f'\n[retention]\nack_from = ["{cloud_id}"]\nkeep_after_ack = "0"\ninterval = 0.5\n'
            '\n[mule]\nmax_handover = "64KB"\n'
        )
    process = start(board, "--mule-http", "127.0.0.1:0")
    running.append(process)
    phone = Phone(mule_address(board, process))
    wait_for("readings", lambda: len(own_seqs_held(board, me)) >= 8, process=process)

    status, info = phone.json("GET", "/mule/v1/info")
    assert status == 200, info
    assert info["node_id"] == me and info["sealed_to"] == cloud_id
    assert info["pending"]["bytes"] > 0 and info["heads"][0]["own"]

    # one whole bundle, within its budget, sealed to the cloud
    headers, first = phone.bundle("", 4096)
    assert len(first) <= 4096 and headers["lichen-complete"] == "0"
    assert headers["lichen-sealed-to"] == cloud_id
    got = spans(tmp_path / "b1.lcb", first)
    assert list(got) == [me] and got[me][0] == 1
    cursor = headers["lichen-cursor"]

    # the next one is cut off mid-way: the phone keeps its last cursor and asks again
    cut = phone.cut_bundle(cursor, 64 * 1024, 600)
    assert len(cut) == 600
    headers, second = phone.bundle(cursor, 64 * 1024)
    assert len(second) > len(cut) and second[:8] == cut[:8]
    got2 = spans(tmp_path / "b2.lcb", second)
    assert got2[me][0] == got[me][1] + 1, (got, got2)  # resumes where the first stopped
    last = got2[me][1]

    # garbage, cut and forged bundles are refused with the reason; nothing stored
    cloud_process: CloudProcess
    with start_cloud(cloud_home, wait=False) as cloud_process:
        cloud_process.wait(lambda: cloud_process.status()["cloud"]["sink_ready"], what="sink")
        up = Phone(cloud_process.http.removeprefix("http://"))
        altered = bytearray(second)
        altered[len(second) // 2] ^= 1
        bad = {
            "garbage": (b"hello, I am not a bundle" * 40, "not a Lichen bundle"),
            "cut": (second[: len(second) - 30], "truncated"),
            "altered": (bytes(altered), "altered|decrypt|corrupt"),
        }
        for name, (body, reason) in bad.items():
            status, answer = up.json("POST", "/v1/bundles", body, content_type=BUNDLE)
            assert status == 400, (name, answer)
            assert any(w in answer["error"] for w in reason.split("|")), (name, answer)
        assert me not in cloud_feeds(cloud_process)

        status, answer = up.json("POST", "/v1/bundles", first, content_type=BUNDLE)
        assert status == 200, answer
        assert answer["stored"] == answer["entries"] == got[me][2]
        status, answer = up.json("POST", "/v1/bundles", second, content_type=BUNDLE)
        assert status == 200 and answer["stored"] == answer["entries"], answer
        receipts = answer["receipts"]
        assert receipts["board"] == me and receipts["acks"] == {me: last}
        handover = base64.b64decode(receipts["handover"])
        carried = {decode_entry(raw).collection: raw for raw in decode_entry_batch(handover)}
        assert sorted(carried) == ["_acks", "_time"] == sorted(FROM_CLOUD[:2])  # and a beacon
        again_status, again = up.json("POST", "/v1/bundles", second, content_type=BUNDLE)
        assert again_status == 200 and again["stored"] == 0
        assert again["already_held"] == again["entries"]
        assert again["receipts"]["acks"] == receipts["acks"]
        assert cloud_feeds(cloud_process)[me]["acked_seq"] == last

    # hostile handovers: each refused with its reason, nothing stored
    cloud_key = cloud_identity.node_id.key
    first_held = own_seqs_held(board, me)[0]
    assert first_held <= got[me][0] + 1
    held_before = entries_by(board, cloud_key)
    ack_raw = carried["_acks"]
    forged = bytearray(ack_raw)
    forged[-1] ^= 1
    stranger = Identity.generate()
    foreign = sign_entry(
        stranger, seq=1, prev=None, ts=pack(1_800_000_000_000), collection=ACKS_COLLECTION,
        body=ack_body(10**6), doc_id=me,
    )  # fmt: skip
    hostile = {
        "forged": (encode_entry_batch([bytes(forged)]), 400, "signature"),
        "stranger": (encode_entry_batch([foreign.raw]), 403, "not a cloud this board accepts"),
        "not a batch": (b"\x00" * 100, 400, "not an entry batch"),
        "oversized": (encode_entry_batch([ack_raw] * 400), 413, "exceeds the limit"),
    }
    for name, (body, code, reason) in hostile.items():
        status, answer = phone.json("POST", "/mule/v1/handover", body)
        assert status == code and reason in answer["error"], (name, status, answer)
    assert entries_by(board, cloud_key) == held_before == 0
    assert own_seqs_held(board, me)[0] == first_held  # nothing pruned on a forged word

    # the receipts, handed over unchanged: stored, and the board prunes what they cover
    status, answer = phone.json("POST", "/mule/v1/handover", handover)
    assert status == 200 and answer["stored"] == 2 and answer["acked"][me] == last, answer
    assert entries_by(board, cloud_key) == 2  # the receipt and the time beacon
    wait_for(
        "the acknowledged readings pruned",
        lambda: own_seqs_held(board, me)[0] > last,
        log=board / "agent.log",
        process=process,
    )
    status, info = phone.json("GET", "/mule/v1/info")
    assert status == 200
    _, third = phone.bundle("", 64 * 1024)  # a new phone starts after what the cloud holds
    assert spans(tmp_path / "b3.lcb", third)[me][0] > last
    stop([process])
    assert process.returncode == 0, (board / "agent.log").read_text()[-3000:]


def test_the_exchange_refuses_what_a_keyless_client_must_not_get(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    """No cloud known: nothing sealed, and nothing unsealed but public collections;
    a cursor of another board; a budget too small; too many connections."""
    (board,) = make_nodes(tmp_path, 1, trust=False)
    with (board / "lichen.toml").open("a") as f:
        f.write('\n[mule]\npublic = ["readings/climate"]\nper_client = 2\n')
    process = start(board, "--mule-http", "127.0.0.1:0")
    running.append(process)
    address = mule_address(board, process)
    phone = Phone(address)
    me = node_id(board)
    wait_for("readings", lambda: len(own_seqs_held(board, me)) >= 3, process=process)

    status, answer = phone.json("GET", "/mule/v1/bundle?budget=65536")
    assert status == 409 and "no cloud to seal" in answer["error"], answer
    _headers, public = phone.bundle("", 65536, public="1")
    # the public bundle: unsealed, only the declared collection
    path = tmp_path / "public.lcb"
    spans(path, public)
    header, manifest = read_manifest(path)
    assert header.recipient is None and manifest.selection == {"collections": ["readings/climate"]}

    other = Identity.generate().node_id.key
    from agent.mule.cursor import Cursor

    foreign = Cursor.start(other).encode()
    status, answer = phone.json("GET", f"/mule/v1/info?since={foreign}")
    assert status == 400 and "another board" in answer["error"]
    status, answer = phone.json("GET", "/mule/v1/bundle?public=1&budget=10")
    assert status == 400 and answer["parameter"] == "budget"

    host, _, port = address.rpartition(":")
    held = [socket.create_connection((host, int(port))) for _ in range(2)]
    try:
        status, answer = phone.json("GET", "/mule/v1/info")
        assert status == 429 and "connections" in answer["error"]
    finally:
        for s in held:
            s.close()
    wait_for("the connections released", lambda: phone.json("GET", "/mule/v1/info")[0] == 200)
    shown = run_lichen("status", home=board).stdout
    assert f"mule      http://{address}, sealed to no cloud, " in shown, shown
    stop([process])
    assert process.returncode == 0, (board / "agent.log").read_text()[-3000:]
