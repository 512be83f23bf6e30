"""The mule exchange over BLE: how long a phone must stay by a board to carry a
day of its readings away.

A typical board's day — ten sensors read once a minute, 14 400 readings in
1 440 reading batches of ten — sits in the board's log. The board serves
the mule exchange (the real :class:`~agent.mule.api.MuleApi` and
:class:`~agent.http.HttpServer`) on its BLE transport; a keyless phone, a
central on the same Bumble emulated radio paced to 20 kB/s per direction,
opens a link in mule mode and collects everything in sealed bundles of
256 KiB (a contact's worth), everything real above the radio. Printed:

* the contact time, from dialling to the last bundle whole (connect, GATT
  discovery, OPEN, the requests), against the sealed bundles' bytes at the
  radio's 20 kB/s (target ≤ 1.3: the link, HTTP and the exchange keep the
  radio busy);
* bundle bytes/s over the link against the radio's 20 kB/s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from lichen_ble import BleConfig, BleTransport
from lichen_ble.bumble_radio import register_local_link
from lichen_ble.controllers import make_link
from lichen_ble.segments import Mode

from agent.entry import Entry
from agent.http import HttpServer
from agent.http_stream import StreamHttpClient
from agent.identity import Identity
from agent.mule.api import MuleApi, MuleRules
from agent.node import Node
from agent.testing import FakeTransportContext

from .bundle_bench import _board_log
from .common import Result

RATE = 20_000.0  # bytes/s per direction
DAY_ENTRIES = 1_440  # ten sensors once a minute, ten readings an entry
BUDGET = 256 * 1024
BOARD, PHONE = Identity(bytes([31]) * 32), Identity(bytes([32]) * 32)


def _transport(hci: str, identity: Identity, *, listen: bool) -> BleTransport:
    context = FakeTransportContext(str(identity.node_id), digest="00" * 8, name="bench")
    return BleTransport(BleConfig(name="ble", hci=hci, listen=listen, scan=not listen), context)


async def _contact(root: Path, entries: int) -> tuple[float, float, int, int]:
    """(contact seconds, seconds collecting, bundle bytes, entries carried)."""
    cloud = Identity.generate().node_id.key

    async def took(_entries: list[Entry]) -> None:
        return None

    name = f"mule-bench-{time.monotonic_ns()}"
    register_local_link(name, make_link(rate=RATE))
    async with Node(root / "board.db", BOARD) as node:
        api = MuleApi(node, MuleRules(), clouds=lambda: frozenset({cloud}),
                      seal_to=lambda: cloud, took=took)  # fmt: skip
        server = HttpServer(api, "", 0, max_body=1 << 20)
        board = _transport(f"local:{name}", BOARD, listen=True)
        board.serve_mule(server)
        phone = _transport(f"local:{name}", PHONE, listen=False)
        await board.start()
        await phone.start()
        try:
            await asyncio.sleep(0.5)  # the phone hears the board's advertisement
            started = time.perf_counter()
            stream = await phone.dial(f"ble://{BOARD.node_id}", Mode.MULE)
            opened = time.perf_counter()
            client = StreamHttpClient(stream)
            since, size, carried = "", 0, 0
            while True:
                answer = await client.request(
                    "GET", f"/mule/v1/bundle?since={since}&budget={BUDGET}"
                )
                assert answer.status == 200, answer.body[:200]
                size += len(answer.body)
                carried += int(answer.headers["lichen-entries"])
                since = answer.headers["lichen-cursor"]
                if answer.headers["lichen-complete"] == "1":
                    break
            done = time.perf_counter()
            await stream.close()
        finally:
            await phone.close()
            await board.close()
            await server.close()
    return done - started, done - opened, size, carried


def bench_mule_ble(quick: bool) -> list[Result]:
    entries = DAY_ENTRIES // 4 if quick else DAY_ENTRIES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _board_log(root / "board.db", BOARD, entries)
        contact, collecting, size, carried = asyncio.run(_contact(root, entries))
    assert carried == entries, carried
    what = "a day of ten sensors at 1/min" if not quick else "six hours of ten sensors at 1/min"
    rows = [
        (f"contact s for {what}", contact, "s", "bundle bytes at 20 kB/s", size / RATE, "≤ 1.3"),
        ("bundle bytes/s over the link", size / collecting, "B/s", "radio 20 kB/s", RATE, "≥ 0.8"),
    ]
    return [Result("mule-ble", *row) for row in rows]
