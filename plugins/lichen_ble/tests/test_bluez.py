"""The bluez back end (bleak dials, bluezero advertises and accepts), unmodified,
against the BlueZ D-Bus stand-in (``lichen_ble.tests.bluez``): a private
dbus-daemon and an ``org.bluez`` whose adapters are Bumble hosts on one
emulated radio; a Bumble node reaches that radio through a controller the
stand-in serves.

The dbus-daemon lives as long as the test session (dbus-python keeps one
system-bus connection per process); each test gets a fresh ``org.bluez``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import TransportError
from agent.identity import Identity
from agent.testing import wait_until
from lichen_ble import Advert, BleTransport, advertising_data

from .bluez import Bus, StandIn, start_bluez, start_bus
from .helpers import conformance, make_transport
from .test_scan import scan_rows

pytestmark = pytest.mark.slow

BOARD, PHONE = 1, 2


def node(seed: int) -> str:
    return str(Identity(bytes([seed]) * 32).node_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def bus() -> Iterator[Bus]:
    pytest.importorskip("bleak")
    pytest.importorskip("bluezero")
    started = start_bus()
    before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = started.address  # bleak's and bluezero's bus
    try:
        yield started
    finally:
        if before is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = before
        started.stop()


class Radio:
    """The stand-in: adapters hci0 and hci1, and ``hci`` for a Bumble node."""

    def __init__(self, stand_in: StandIn, port: int) -> None:
        self.stand_in = stand_in
        self.hci = f"tcp-client:127.0.0.1:{port}"


@pytest.fixture
def radio(bus: Bus, tmp_path: Path) -> Iterator[Radio]:
    port = free_port()
    stand_in = start_bluez(
        bus, adapters=2, serve=[f"tcp-server:127.0.0.1:{port}"], log=tmp_path / "bluez.log"
    )
    try:
        yield Radio(stand_in, port)
    finally:
        stand_in.stop()


def bluez(seed: int, adapter: str, **config: Any) -> BleTransport:
    return make_transport(None, seed, backend="bluez", adapter=adapter, **config)


async def connected_centrals(adapter: str) -> int:
    """How many devices BlueZ says are connected to ``adapter`` (Device1.Connected)."""
    from dbus_fast import BusType, Message
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(destination="org.bluez", path="/", member="GetManagedObjects",
                    interface="org.freedesktop.DBus.ObjectManager")
        )  # fmt: skip
    finally:
        bus.disconnect()
    assert reply is not None
    return sum(
        1
        for path, interfaces in reply.body[0].items()
        if path.startswith(f"/org/bluez/{adapter}/dev_")
        and interfaces.get("org.bluez.Device1", {}).get("Connected").value
    )


async def test_a_bleak_central_and_a_bumble_peripheral_pass_the_conformance_suite(
    radio: Radio,
) -> None:
    board = make_transport(radio.hci, BOARD, scan=False)
    phone = bluez(PHONE, "hci0", listen=False)
    await conformance(board, phone, large=60_000)


async def test_a_bumble_central_and_a_bluezero_peripheral_pass_the_conformance_suite(
    radio: Radio,
) -> None:
    board = bluez(BOARD, "hci1", scan=False)
    phone = make_transport(radio.hci, PHONE, listen=False)
    await conformance(board, phone, large=60_000)


async def test_bleak_and_bluezero_on_two_adapters_pass_the_conformance_suite(
    radio: Radio,
) -> None:
    board = bluez(BOARD, "hci1", scan=False)
    phone = bluez(PHONE, "hci0", listen=False)
    await conformance(board, phone, large=60_000)


async def test_a_bleak_central_sights_a_bluezero_node_by_its_digest(radio: Radio) -> None:
    board = bluez(BOARD, "hci1", digest="aa" * 8, scan=False)
    phone = bluez(PHONE, "hci0", digest="bb" * 8, listen=False)
    await board.start()
    await phone.start()
    try:
        async with contextlib.aclosing(phone.sightings()) as sightings:
            async with asyncio.timeout(10):
                seen = await anext(sightings)
        assert (seen.address, seen.node_id, seen.heads_digest) == (
            f"ble://{node(BOARD)}",
            node(BOARD),
            "aaaaaaaa",
        )
        [nearby] = phone.nearby.values()
        assert nearby.rssi == -50 and nearby.advert.room == 1  # one central at a time
    finally:
        await phone.close()
        await board.close()


async def test_advertisements_changed_in_quick_succession_leave_the_last_on_the_air(
    radio: Radio,
) -> None:
    """The transport re-advertises from several tasks (heads changed, a link came
    or went); BlueZ takes one registration of an advertisement at a time."""
    board = bluez(BOARD, "hci1", scan=False)
    phone = make_transport(radio.hci, PHONE, listen=False)
    await board.start()
    await phone.start()
    try:
        hint = Identity(bytes([BOARD]) * 32).node_id.key[:5]
        adverts = [Advert(node_hint=hint, digest=bytes([i]) * 4, room=1) for i in range(1, 6)]
        await asyncio.gather(*(board.radio.advertise(advertising_data(a)) for a in adverts))
        await wait_until(
            lambda: any(n.advert.digest == bytes([5]) * 4 for n in phone.nearby.values()),
            what="the last advertisement heard",
        )
    finally:
        await phone.close()
        await board.close()


async def test_a_second_central_is_refused_while_a_link_is_up(radio: Radio) -> None:
    """BlueZ notifies tx to every subscribed central, so a bluez peripheral keeps
    one link: a second central (dialling the device address, as a stale
    advertisement would let it) is disconnected, and the first link carries on."""
    board = bluez(BOARD, "hci1", scan=False)
    first = make_transport(radio.hci, PHONE, listen=False)
    second = make_transport(radio.hci, 3, listen=False, connect_timeout=2.0)
    for transport in (board, first, second):
        await transport.start()
    try:
        outgoing = await first.connect(f"ble://{node(BOARD)}")
        incoming = await board.accept()
        [address] = first.nearby
        with pytest.raises(TransportError):
            await second.connect(f"ble://{address}")
        assert await connected_centrals("hci1") == 1  # BlueZ holds one connection, not two
        await outgoing.send(b"still here")
        assert await incoming.receive() == b"still here"
        assert board.radio.incoming == 1 and board._advert().room == 0
    finally:
        for transport in (second, first, board):
            await transport.close()


async def test_a_scan_with_bleak_lists_a_bumble_board_and_what_it_holds(radio: Radio) -> None:
    await scan_rows(None, radio.hci)


async def test_a_bumble_scan_lists_a_bluezero_board_and_what_it_holds(radio: Radio) -> None:
    await scan_rows(radio.hci, None, backend="bluez", adapter="hci1")
