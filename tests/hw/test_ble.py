"""Hardware in the loop: the bluez BLE back end on a board's real radio.

Marked ``hw``, so deselected by default. On a board with BlueZ (and the
``lichen[ble]`` extra), near a second board that runs ``lichen run --listen
ble:`` with a ``[[transports.ble]]`` table of its own::

    LICHEN_HW_BLE_PEER=lc1… .venv/bin/python -m pytest -m hw tests/hw/test_ble.py -v

``LICHEN_HW_BLE_ADAPTER``  this board's BlueZ adapter (default ``hci0``)
``LICHEN_HW_BLE_PEER``     the node id of the board nearby (``lichen id`` there)
``LICHEN_HW_BLE_HOME``     for the sync: a home on this board whose lichen.toml
                           has a bluez ``[[transports.ble]]`` table, and which the
                           peer trusts and trusts back (``lichen trust add``)

What these cover that the stand-in cannot (docs/ble.md, "Tested here, and
only on a Pi"): bluetoothd itself, the system bus's policy for this user,
the real radio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lichen_ble import BleConfig, BleTransport

from agent.identity import Identity, NodeId
from agent.testing import FakeTransportContext

pytestmark = pytest.mark.hw

ADAPTER = os.environ.get("LICHEN_HW_BLE_ADAPTER", "hci0")


def peer() -> str:
    value = os.environ.get("LICHEN_HW_BLE_PEER")
    if not value:
        pytest.skip("set LICHEN_HW_BLE_PEER to the node id of a board nearby that listens on BLE")
    return str(NodeId.parse(value))


@pytest.fixture(autouse=True)
def radio() -> None:
    pytest.importorskip("bleak", reason="pip install 'lichen[ble]'")
    if not Path(f"/sys/class/bluetooth/{ADAPTER}").exists():
        pytest.skip(f"no Bluetooth adapter {ADAPTER} on this board")


async def test_the_bluez_back_end_hears_the_peer_and_opens_a_link_to_it() -> None:
    """Scan (bleak, DuplicateData), sight the peer by its advertisement, read its
    info, connect and open a link: the channel's handshake then runs on it."""
    node = str(Identity(os.urandom(32)).node_id)
    context = FakeTransportContext(node, digest="ff" * 8, name="hw-test")
    transport = BleTransport(
        BleConfig(name="ble", backend="bluez", adapter=ADAPTER, listen=False), context
    )
    target = peer()
    await transport.start()
    try:
        async with contextlib.aclosing(transport.sightings()) as sightings:
            async with asyncio.timeout(30):
                async for seen in sightings:
                    if seen.node_id == target:
                        break
        nearby = [n for n in transport.nearby.values() if n.node == NodeId.parse(target).key]
        assert nearby and -100 < nearby[0].rssi < 0
        stream = await transport.connect(f"ble://{target}")
        try:
            assert stream.max_frame_hint >= 17  # at least the minimum ATT MTU's value
        finally:
            await stream.close()
    finally:
        await transport.close()


def test_lichen_sync_over_bluez_with_the_peer() -> None:
    """``lichen sync ble:PEER`` from a home that uses the bluez back end."""
    home = os.environ.get("LICHEN_HW_BLE_HOME")
    if not home:
        pytest.skip("set LICHEN_HW_BLE_HOME to a home with a bluez [[transports.ble]] table")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lichen"), "--home", home, "sync", f"ble:{peer()}",
         "--timeout", "120"],
        check=False, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "synced with" in result.stdout
