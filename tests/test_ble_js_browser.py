"""Lichen Field's BLE link core (agent/field/static/ble.js) in Debian's Chromium,
against a board's real link core and mule exchange in Python.

The page runs ble.js's Link and HttpOnLink; each GATT value the page writes
(an rx write without response) goes to the board's peripheral GattStream, and
each value the board notifies goes back into the page — the GATT layer itself
is what the browser's emulation cannot carry (docs/ble.md, "In a browser").
The page collects a sealed bundle of a real log over the link, one value in
60 lost each way; the cloud's key opens it and it imports whole."""

from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lichen_ble.link import Role
from lichen_ble.segments import Mode
from lichen_ble.service import INFO_UUID, RX_UUID, SERVICE_UUID, TX_UUID, Info
from lichen_ble.stream import GattStream

from agent.bundle.importer import import_into_store
from agent.bundle.seal import Opener
from agent.http import HttpServer
from agent.http_stream import serve_stream
from agent.identity import Identity
from agent.mule.api import MuleApi, MuleRules
from agent.node import Node
from agent.store.log_store import LogStore

from .helpers.cloud import feed
from .test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS, _why_no_browser

pytestmark = pytest.mark.slow

STATIC = Path(__file__).resolve().parents[1] / "agent" / "field" / "static"
READINGS = 1000
#: Web Bluetooth is off by default in Chromium on Linux
WEB_BLUETOOTH = ["--enable-features=WebBluetooth"]
LOSE_EVERY = 60  # one value in 60 each way is lost, as a crowded radio loses them
CCCD = "00002902-0000-1000-8000-00805f9b34fb"


@pytest.fixture
def static_site() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class PageBearer:
    """The board's side of the GATT connection. Chromium's BluetoothEmulation
    has no command to notify a characteristic's value (docs/ble.md, "In a
    browser"), so a notification is handed to the page's link directly."""

    peer = "ble://09:09:09:09:09:09"

    def __init__(self, page: Any) -> None:
        self.page = page
        self.notified = self.count = 0

    async def write(self, value: bytes) -> None:
        self.notified += len(value)
        self.count += 1
        if self.count % LOSE_EVERY == 0:
            return  # lost on the air: the link must recover it
        await self.page.evaluate(
            "v => window.transport.link.onValue(new Uint8Array(v))", list(value)
        )

    async def disconnect(self) -> None:
        return None


class EmulatedBoard:
    """The board's GATT service in the browser's emulated adapter (DevTools'
    BluetoothEmulation): it accepts the connection and the discovery, serves
    info's value, takes the subscription to tx, and gives every write to rx
    to the board's link."""

    def __init__(self, browser_cdp: Any, page_cdp: Any, board: GattStream, info: bytes) -> None:
        self.cdp, self.page_cdp, self.board, self.info = browser_cdp, page_cdp, board, info
        self.rx = self.tx = self.info_id = ""
        self.written = self.writes = 0
        self.lost_data = False
        self.operations: list[str] = []
        self._prompts: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        cdp = self.cdp
        await cdp.send("BluetoothEmulation.enable", {"state": "powered-on", "leSupported": True})
        await self.page_cdp.send("DeviceAccess.enable")
        self.page_cdp.on("DeviceAccess.deviceRequestPrompted", self._prompted)
        cdp.on("BluetoothEmulation.gattOperationReceived", self._gatt)
        cdp.on("BluetoothEmulation.characteristicOperationReceived", self._characteristic)
        address = self.board.peer.removeprefix("ble://")
        await cdp.send("BluetoothEmulation.simulatePreconnectedPeripheral", {
            "address": address, "name": "lichen", "manufacturerData": [],
            "knownServiceUuids": [str(SERVICE_UUID)]})  # fmt: skip
        service = await cdp.send(
            "BluetoothEmulation.addService", {"address": address, "serviceUuid": str(SERVICE_UUID)}
        )
        ids = {}
        wanted = [(RX_UUID, {"writeWithoutResponse": True}), (TX_UUID, {"notify": True}),
                  (INFO_UUID, {"read": True})]  # fmt: skip
        for uuid, properties in wanted:
            added = await cdp.send("BluetoothEmulation.addCharacteristic", {
                "serviceId": service["serviceId"], "characteristicUuid": str(uuid),
                "properties": properties})  # fmt: skip
            ids[uuid] = added["characteristicId"]
        await cdp.send("BluetoothEmulation.addDescriptor", {
            "characteristicId": ids[TX_UUID], "descriptorUuid": CCCD})  # fmt: skip
        self.rx, self.tx, self.info_id = ids[RX_UUID], ids[TX_UUID], ids[INFO_UUID]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _prompted(self, params: dict[str, Any]) -> None:
        if params["id"] not in self._prompts and params["devices"]:  # it comes twice
            self._prompts.add(params["id"])
            self._spawn(self.page_cdp.send("DeviceAccess.selectPrompt", {
                "id": params["id"], "deviceId": params["devices"][0]["id"]}))  # fmt: skip

    def _gatt(self, params: dict[str, Any]) -> None:
        self.operations.append(params["type"])
        self._spawn(self.cdp.send("BluetoothEmulation.simulateGATTOperationResponse",
                                  {**params, "code": 0}))  # fmt: skip

    def _characteristic(self, params: dict[str, Any]) -> None:
        kind, characteristic = params["type"], params["characteristicId"]
        if kind == "write" and characteristic == self.rx:
            value = base64.b64decode(params["data"])
            self.written += len(value)
            self.writes += 1
            first_data = value[0] == 0x02 and not self.lost_data  # the first request's
            self.lost_data = self.lost_data or first_data
            if self.writes % LOSE_EVERY != 0 and not first_data:  # else lost on the air
                self.board.value_received(value)
            return  # a write without response is answered by no one
        self.operations.append(kind)
        answer = {"characteristicId": characteristic, "type": kind, "code": 0}
        if kind == "read" and characteristic == self.info_id:
            answer["data"] = base64.b64encode(self.info).decode()
        self._spawn(self.cdp.send("BluetoothEmulation.simulateCharacteristicOperationResponse",
                                  answer))  # fmt: skip


PAGE_SCRIPT = """async () => {
  const m = await import('/ble.js');
  window.transport = m.bleTransport('ble:');
  const text = (b) => new TextDecoder().decode(b);
  const info = await window.transport.request('GET', '/mule/v1/info');
  const started = performance.now();
  const bundle = await window.transport.request('GET', '/mule/v1/bundle?budget=1048576');
  const ms = performance.now() - started;
  let binary = '';
  for (const byte of new Uint8Array(bundle.body)) binary += String.fromCharCode(byte);
  const link = window.transport.link;
  await window.transport.close();
  return {info: JSON.parse(text(info.body)), status: bundle.status, headers: bundle.headers,
          body: btoa(binary), ms, retransmissions: link.retransmissions};
}"""


async def test_the_web_app_collects_a_sealed_bundle_over_web_bluetooth_that_imports_whole(
    tmp_path: Path, static_site: str
) -> None:
    problem = _why_no_browser()
    if problem is not None:
        pytest.fail(problem)
    from playwright.async_api import async_playwright

    me, cloud = Identity(bytes([7]) * 32), Identity.generate()
    with LogStore(tmp_path / "board.db") as store:
        for entry in feed(me, READINGS).entries:
            store.insert(entry)

    async def took(_entries: object) -> None:
        return None

    async with Node(tmp_path / "board.db", me) as node, async_playwright() as p:
        api = MuleApi(node, MuleRules(name="shed-2"), clouds=lambda: frozenset({cloud.node_id.key}),
                      seal_to=lambda: cloud.node_id.key, took=took)  # fmt: skip
        server = HttpServer(api, "", 0, max_body=1 << 20, serves="the mule exchange")
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *WEB_BLUETOOTH]
        )
        try:
            page = await browser.new_page()
            await page.goto(static_site + "/")
            bearer = PageBearer(page)
            board = GattStream(bearer, Role.PERIPHERAL, mtu=517, modes=(Mode.SYNC, Mode.MULE))
            info = Info(node=me.node_id.key, digest=bytes(8), room=1).encode()
            browser_cdp = await browser.new_browser_cdp_session()
            page_cdp = await page.context.new_cdp_session(page)
            emulated = EmulatedBoard(browser_cdp, page_cdp, board, info)
            await emulated.start()

            async def serve() -> None:
                await board.open(timeout=15)
                assert board.mode is Mode.MULE
                await serve_stream(server, board, bearer.peer)

            serving = asyncio.create_task(serve())
            started = time.monotonic()
            result = await page.evaluate(PAGE_SCRIPT)
            elapsed = time.monotonic() - started
            async with asyncio.timeout(10):
                await serving
        finally:
            await browser.close()
            await server.close()
    assert emulated.operations[:2] == ["connection", "discovery"]
    assert "subscribe-to-notifications" in emulated.operations
    # values were lost both ways, and both links sent again what was lost
    assert result["retransmissions"] > 0 and board.link.retransmissions > 0
    assert result["info"]["node_id"] == str(me.node_id)
    assert result["info"]["pending"]["entries"] == READINGS
    assert result["status"] == 200 and result["headers"]["lichen-complete"] == "1"
    bundle = tmp_path / "carried.lcb"
    bundle.write_bytes(base64.b64decode(result["body"]))
    with LogStore(tmp_path / "cloud.db") as cloud_store:
        report = import_into_store(bundle, cloud_store, opener=Opener(cloud))
        assert report.stored == READINGS
        head = cloud_store.head(me.node_id.key)
        assert head is not None and head.seq == READINGS
    rate = bundle.stat().st_size / (result["ms"] / 1000)
    print(json.dumps({"bundle_bytes": bundle.stat().st_size, "bundle_ms": round(result["ms"]),
                      "bytes_per_s": round(rate), "whole_s": round(elapsed, 2),
                      "notified": bearer.notified, "written": emulated.written,
                      "retransmissions": result["retransmissions"]}))  # fmt: skip
    assert server.requests == 2
