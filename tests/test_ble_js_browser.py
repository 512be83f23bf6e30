"""Lichen Field over Web Bluetooth (agent/field/static/ble.js) in Debian's
Chromium, against a board's real link core and mule exchange in Python.

The app's Web Bluetooth calls go to DevTools' BluetoothEmulation: the chooser
is answered, the connection, discovery and subscription accepted, and each
rx write (a write without response) goes to the board's peripheral
GattStream. Each value the board notifies is handed to the page's link, as
the emulation cannot notify (docs/ble.md, "In a web app"). One value in 60
is lost each way. The sealed bundle the app keeps imports whole."""

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
from agent.field import field_file, field_files
from agent.http import HttpServer
from agent.http_stream import serve_stream
from agent.identity import Identity
from agent.mule.api import MuleApi, MuleRules
from agent.node import Node
from agent.store.log_store import LogStore

from .helpers.cloud import feed
from .test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS, _why_no_browser

pytestmark = pytest.mark.slow

READINGS = 1000
#: Web Bluetooth is off by default in Chromium on Linux
WEB_BLUETOOTH = ["--enable-features=WebBluetooth"]
LOSE_EVERY = 60  # one value in 60 each way is lost, as a crowded radio loses them
CCCD = "00002902-0000-1000-8000-00805f9b34fb"


@pytest.fixture
def static_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app's files as the cloud serves them (those it shares with the
    dashboard included), from a plain local web server."""
    site = tmp_path_factory.mktemp("field")
    for name in field_files():
        (site / name).write_bytes(field_file(name))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
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
        await self.page.evaluate(DELIVER, list(value))

    async def disconnect(self) -> None:
        return None


class EmulatedBoard:
    """The board's GATT service in the browser's emulated adapter (DevTools'
    BluetoothEmulation): it accepts the connection and the discovery, serves
    info's value, takes the subscription to tx, and gives every write to rx
    to the board's link."""

    def __init__(self, browser_cdp: Any, page_cdp: Any, bearer: PageBearer, info: bytes,
                 server: HttpServer) -> None:  # fmt: skip
        self.cdp, self.page_cdp, self.bearer, self.info = browser_cdp, page_cdp, bearer, info
        self.server = server
        self.links: list[GattStream] = []  # one per GATT connection
        self.first_data = b""
        self.data_again = False  # the page sent the lost request again
        self.rx = self.tx = self.info_id = ""
        self.written = self.writes = 0
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
        address = self.bearer.peer.removeprefix("ble://")
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
        if params["type"] == "connection":
            link = GattStream(self.bearer, Role.PERIPHERAL, mtu=517, modes=(Mode.MULE,))
            self.links.append(link)
            self._spawn(self._serve(link))
        self._spawn(self.cdp.send("BluetoothEmulation.simulateGATTOperationResponse",
                                  {**params, "code": 0}))  # fmt: skip

    async def _serve(self, link: GattStream) -> None:
        await link.open(timeout=15)
        await serve_stream(self.server, link, self.bearer.peer)

    def _characteristic(self, params: dict[str, Any]) -> None:
        kind, characteristic = params["type"], params["characteristicId"]
        if kind == "write" and characteristic == self.rx:
            value = base64.b64decode(params["data"])
            self.written += len(value)
            self.writes += 1
            first_data = value[0] == 0x02 and not self.first_data  # the first request's
            if first_data:
                self.first_data = value
            self.data_again = self.data_again or (not first_data and value == self.first_data)
            if self.writes % LOSE_EVERY != 0 and not first_data:  # else lost on the air
                self.links[-1].value_received(value)
            return  # a write without response is answered by no one
        self.operations.append(kind)
        answer = {"characteristicId": characteristic, "type": kind, "code": 0}
        if kind == "read" and characteristic == self.info_id:
            answer["data"] = base64.b64encode(self.info).decode()
        self._spawn(self.cdp.send("BluetoothEmulation.simulateCharacteristicOperationResponse",
                                  answer))  # fmt: skip


DELIVER = """async (v) => {
  const m = await import('/ble.js');
  for (const link of m.openLinks) link.onValue(new Uint8Array(v));
}"""
BUNDLES = """async () => {
  const store = await import('/store.js');
  const out = [];
  for (const meta of await store.all('bundles')) {
    const data = await store.one('data', meta.id);
    const bytes = new Uint8Array(data instanceof Blob ? await data.arrayBuffer() : data);
    let binary = '';
    for (const byte of bytes) binary += String.fromCharCode(byte);
    out.push(btoa(binary));
  }
  return out;
}"""


async def wait_page(page: Any, script: str, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await page.evaluate(script):
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s")


BOARD_KEPT = """async () => {
  const store = await import('/store.js');
  const [board] = await store.all('boards');
  return board && (board.node_id || board.error) ? board : null;
}"""


VISITED = BOARD_KEPT.replace("board.node_id || board.error", "board.last_visit || board.error")


async def test_lichen_field_adds_a_board_over_web_bluetooth_and_carries_its_bundle(
    tmp_path: Path, static_site: str
) -> None:
    """The app as a technician uses it: *Add over Bluetooth* (the browser's
    chooser), then *Visit*; the sealed bundle it keeps imports whole."""
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
            await page.goto(static_site + "/index.html")
            bearer = PageBearer(page)
            info = Info(node=me.node_id.key, digest=bytes(8), room=1).encode()
            emulated = EmulatedBoard(await browser.new_browser_cdp_session(),
                                     await page.context.new_cdp_session(page),
                                     bearer, info, server)  # fmt: skip
            await emulated.start()
            await page.click("#add-ble")
            board = await wait_page(page, BOARD_KEPT, "the board added")
            assert board["node_id"] == str(me.node_id) and board["address"].startswith("ble:")
            card = f'article.board[data-node="{me.node_id}"]'
            started = time.monotonic()
            await page.click(f"{card} button.visit")
            visited = await wait_page(page, VISITED, "the visit", 60)
            elapsed = time.monotonic() - started
            bundles = await page.evaluate(BUNDLES)
        finally:
            await browser.close()
            await server.close()
    assert visited["error"] is None and visited["last_visit"]["bundles"] >= 1, visited
    assert emulated.operations[:2] == ["connection", "discovery"]
    assert "subscribe-to-notifications" in emulated.operations
    # values were lost both ways, and both ends sent again what was lost
    assert emulated.data_again and sum(link.link.retransmissions for link in emulated.links) > 0
    size = stored = 0
    with LogStore(tmp_path / "cloud.db") as cloud_store:
        for i, text in enumerate(bundles):
            path = tmp_path / f"carried-{i}.lcb"
            path.write_bytes(base64.b64decode(text))
            size += path.stat().st_size
            stored += import_into_store(path, cloud_store, opener=Opener(cloud)).stored
        head = cloud_store.head(me.node_id.key)
    assert stored == READINGS and head is not None and head.seq == READINGS
    print(json.dumps({"bundles": len(bundles), "bytes": size, "visit_s": round(elapsed, 2),
                      "links": len(emulated.links), "requests": server.requests,
                      "notified": bearer.notified, "written": emulated.written}))  # fmt: skip
