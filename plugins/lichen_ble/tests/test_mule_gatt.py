"""The mule exchange over GATT: a keyless central opens a link in mule mode to
a board's peripheral (Bumble emulated controllers, one process) and speaks
plain HTTP on it to the board's real MuleApi and HttpServer, on a real log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.bundle.importer import import_into_store
from agent.bundle.seal import Opener
from agent.clock import pack
from agent.entry import Entry, sign_entry
from agent.errors import TransportError
from agent.http import HttpServer
from agent.http_stream import StreamHttpClient
from agent.identity import Identity
from agent.mule.api import MuleApi, MuleRules
from agent.node import Node
from agent.store.log_store import LogStore
from agent.uplink.wire import ACKS_COLLECTION, ack_body, encode_entry_batch
from lichen_ble import BleTransport
from lichen_ble.segments import Mode
from tests.helpers.cloud import feed

from .helpers import OutOfRange, local_link, make_transport

pytestmark = pytest.mark.slow

BOARD_SEED, PHONE_SEED = 1, 2
READINGS = 300


@dataclass
class Board:
    node: Node
    ble: BleTransport
    api: MuleApi
    server: HttpServer
    cloud: Identity
    took: list[Entry] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"ble://{self.ble.context.node_id}"


@contextlib.asynccontextmanager
async def board_on(
    tmp_path: Path, hci: str, *, serve: bool = True, rate: float = 600.0
) -> AsyncIterator[Board]:
    """A board with ``READINGS`` readings in its log, its BLE transport listening
    and (with ``serve``) serving the mule exchange on mule links."""
    me, cloud = Identity(bytes([BOARD_SEED]) * 32), Identity.generate()
    store = LogStore(tmp_path / "board.db")
    for entry in feed(me, READINGS).entries:
        store.insert(entry)
    store.close()
    took: list[Entry] = []

    async def record(entries: list[Entry]) -> None:
        took.extend(entries)

    async with Node(tmp_path / "board.db", me) as node:
        api = MuleApi(node, MuleRules(name="shed-1", rate_per_minute=rate),
                      clouds=lambda: frozenset({cloud.node_id.key}),
                      seal_to=lambda: cloud.node_id.key, took=record)  # fmt: skip
        server = HttpServer(api, "", 0, max_body=1 << 20, max_per_client=2,
                            serves="the mule exchange")  # fmt: skip
        ble = make_transport(hci, BOARD_SEED, scan=False)
        if serve:
            ble.serve_mule(server)
        await ble.start()
        try:
            yield Board(node, ble, api, server, cloud, took)
        finally:
            await ble.close()
            await server.close()


async def collect(client: StreamHttpClient, since: str, budget: int, path: Path) -> dict[str, Any]:
    answer = await client.request("GET", f"/mule/v1/bundle?since={since}&budget={budget}")
    assert answer.status == 200, answer.body
    path.write_bytes(answer.body)
    return answer.headers


async def test_a_central_in_mule_mode_collects_a_sealed_bundle_and_hands_receipts_over(
    tmp_path: Path,
) -> None:
    hci = local_link()
    async with board_on(tmp_path, hci, rate=16.0) as board:  # a burst of 4 requests
        phone = make_transport(hci, PHONE_SEED, listen=False)
        other = make_transport(hci, PHONE_SEED + 1, listen=False)
        await phone.start()
        await other.start()
        try:
            device = board.ble.radio.address
            room = (await other.radio.read_info(device, 10)).room
            stream = await phone.dial(board.address, Mode.MULE)
            assert (await other.radio.read_info(device, 10)).room == room - 1  # counts as a link
            client = StreamHttpClient(stream)
            info = await client.request("GET", "/mule/v1/info")
            assert info.status == 200 and info.headers["access-control-allow-origin"] == "*"
            body = json.loads(info.body)
            assert body["node_id"] == board.ble.context.node_id and body["name"] == "shed-1"
            assert body["pending"]["entries"] == READINGS
            bundle = tmp_path / "carried.lcb"
            headers = await collect(client, "", 1 << 20, bundle)
            assert headers["lichen-complete"] == "1" and headers["lichen-entries"] == str(READINGS)
            assert headers["lichen-sealed-to"] == str(board.cloud.node_id)
            # the cloud opens the sealed bundle and stores it whole
            cloud_store = LogStore(tmp_path / "cloud.db")
            try:
                report = import_into_store(bundle, cloud_store, opener=Opener(board.cloud))
                assert report.manifest.entries == report.stored == READINGS
                assert cloud_store.head(board.node.identity.node_id.key).seq == READINGS  # type: ignore[union-attr]
            finally:
                cloud_store.close()
            # the receipt goes back over the same link, the same request as over HTTP
            receipt = sign_entry(board.cloud, seq=1, prev=None, ts=pack(1_800_000_000_000),
                                 collection=ACKS_COLLECTION, body=ack_body(READINGS),
                                 doc_id=board.ble.context.node_id)  # fmt: skip
            handover = await client.request(
                "POST", "/mule/v1/handover", encode_entry_batch([receipt.raw])
            )
            assert handover.status == 200 and json.loads(handover.body)["stored"] == 1
            assert [e.raw for e in board.took] == [receipt.raw]
            again = await client.request("GET", f"/mule/v1/info?since={headers['lichen-cursor']}")
            assert json.loads(again.body)["pending"]["entries"] == 0
            # the rate is per client, and a client is its device address
            limited = await client.request("GET", "/mule/v1/info")
            assert limited.status == 429 and "from this client" in json.loads(limited.body)["error"]
            await stream.close()
            elsewhere = await other.dial(board.address, Mode.MULE)
            assert (await StreamHttpClient(elsewhere).request("GET", "/mule/v1/info")).status == 200
            await elsewhere.close()
            assert board.api.stats["bundles"] == 1 and board.server.requests == 6
        finally:
            await other.close()
            await phone.close()


async def test_mule_mode_is_refused_cleanly_by_a_version_1_node_and_one_not_serving_it(
    tmp_path: Path,
) -> None:
    hci = local_link()
    async with board_on(tmp_path, hci, serve=False) as board:
        phone = make_transport(hci, PHONE_SEED, listen=False)
        await phone.start()
        try:
            with pytest.raises(TransportError, match="MODE: this node serves no mule links"):
                await phone.dial(board.address, Mode.MULE)
            board.ble.radio.hooks.link_options["max_version"] = 1  # a node of version 1
            await asyncio.sleep(0.3)
            with pytest.raises(TransportError, match="speaks no link protocol version 2"):
                await phone.dial(board.address, Mode.MULE)
            sync = await phone.connect(board.address)  # sync links are as before
            await sync.send(b"ping")
            accepted = await board.ble.accept()
            assert await accepted.receive() == b"ping"
            await sync.close()
            await accepted.close()
        finally:
            await phone.close()


async def test_a_contact_cut_mid_bundle_resumes_from_the_last_whole_bundles_cursor(
    tmp_path: Path,
) -> None:
    from bumble.link import LocalLink

    link = LocalLink()
    hci = local_link(link)
    async with board_on(tmp_path, hci) as board:
        phone = make_transport(hci, PHONE_SEED, listen=False)
        await phone.start()
        cloud_store = LogStore(tmp_path / "cloud.db")
        try:
            cursor, imported, contacts = "", 0, 0
            cut = OutOfRange(link, board.ble.radio.address, 30_000)
            while imported < READINGS:
                contacts += 1
                assert contacts <= 6, "the rest should have come by now"
                try:
                    stream = await phone.dial(board.address, Mode.MULE)
                    client = StreamHttpClient(stream)
                    while True:
                        path = tmp_path / f"b{contacts}-{imported}.lcb"
                        headers = await collect(client, cursor, 8192, path)
                        report = import_into_store(path, cloud_store, opener=Opener(board.cloud))
                        imported += report.stored
                        cursor = headers["lichen-cursor"]
                        if headers["lichen-complete"] == "1":
                            break
                    await stream.close()
                except TransportError:
                    assert cut.cut
                    await asyncio.sleep(0.5)
            assert contacts >= 2 and cut.cut
            assert imported == READINGS  # not one entry twice: each bundle after the last cursor
            assert cloud_store.head(board.node.identity.node_id.key).seq == READINGS  # type: ignore[union-attr]
        finally:
            cloud_store.close()
            await phone.close()
