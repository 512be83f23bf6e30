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
only on a Pi"): bluetoothd itself (its MTU exchange, GATT database and
advertising), the system bus's policy for this user, the adapter powered
by the transport, the real radio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


async def adapter_properties(bus: Any) -> dict[str, Any]:
    """Adapter1's and LEAdvertisingManager1's properties of ``ADAPTER``, as values."""
    from dbus_fast import Message

    values: dict[str, Any] = {}
    for interface in ("org.bluez.Adapter1", "org.bluez.LEAdvertisingManager1"):
        reply = await bus.call(
            Message(destination="org.bluez", path=f"/org/bluez/{ADAPTER}",
                    interface="org.freedesktop.DBus.Properties", member="GetAll",
                    signature="s", body=[interface])
        )  # fmt: skip
        assert reply is not None and reply.body, f"no {interface} on {ADAPTER}"
        values.update({key: variant.value for key, variant in reply.body[0].items()})
    return values


async def test_the_bluez_peripheral_powers_the_adapter_registers_and_advertises() -> None:
    """bluezero's GATT application and advertisement, registered with the real
    bluetoothd by this user (the bluetooth group's policy), on an adapter the
    transport powers on; they are gone once it stops."""
    pytest.importorskip("bluezero", reason="pip install 'lichen[ble]'")
    from dbus_fast import BusType, Message, Variant
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        await bus.call(
            Message(destination="org.bluez", path=f"/org/bluez/{ADAPTER}",
                    interface="org.freedesktop.DBus.Properties", member="Set", signature="ssv",
                    body=["org.bluez.Adapter1", "Powered", Variant("b", False)])
        )  # fmt: skip
        before = await adapter_properties(bus)
        node = str(Identity(os.urandom(32)).node_id)
        context = FakeTransportContext(node, digest="ff" * 8, name="hw-test")
        transport = BleTransport(
            BleConfig(name="ble", backend="bluez", adapter=ADAPTER, scan=False), context
        )
        await transport.start()
        try:
            running = await adapter_properties(bus)
        finally:
            await transport.close()
        after = await adapter_properties(bus)
    finally:
        bus.disconnect()
    assert before["Powered"] is False and running["Powered"] is True
    assert running["ActiveInstances"] == before["ActiveInstances"] + 1  # our advertisement
    assert after["ActiveInstances"] == before["ActiveInstances"]


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
