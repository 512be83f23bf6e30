"""The BLE transport over Bumble emulated controllers in one process (LocalLink)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from agent.identity import Identity
from lichen_ble import BleTransport

from .helpers import OutOfRange, conformance, local_link, make_transport


async def started(*transports: BleTransport) -> None:
    for transport in transports:
        await transport.start()


@pytest.mark.slow
async def test_streams_over_emulated_ble_pass_the_conformance_suite() -> None:
    hci = local_link()
    await conformance(make_transport(hci, 1, scan=False), make_transport(hci, 2, listen=False),
                      large=100_000)  # fmt: skip


async def test_a_node_with_other_heads_is_sighted_with_its_node_id_and_digest() -> None:
    hci = local_link()
    board = make_transport(hci, 1, digest="aa" * 8, scan=False)
    phone = make_transport(hci, 2, digest="bb" * 8, listen=False)
    await started(board, phone)
    try:
        async with contextlib.aclosing(phone.sightings()) as sightings:
            async with asyncio.timeout(10):
                seen = await anext(sightings)
        board_id = str(Identity(bytes([1]) * 32).node_id)
        assert (seen.address, seen.node_id, seen.heads_digest) == (
            f"ble://{board_id}", board_id, "aaaaaaaa",
        )  # fmt: skip
        [nearby] = phone.nearby.values()
        assert nearby.rssi == -50 and nearby.node == Identity(bytes([1]) * 32).node_id.key
    finally:
        await phone.close()
        await board.close()


async def test_nodes_with_the_same_heads_or_that_dial_us_are_not_reported() -> None:
    """Of three boards, the phone reports only the one whose heads differ from its
    own; a board with equal heads is left alone, and so is one that dials itself
    and has the smaller hint (it will dial the phone)."""
    hci = local_link()
    same = make_transport(hci, 1, digest="cc" * 8, scan=False)  # equal heads
    smaller = make_transport(hci, 8, digest="dd" * 8)  # dials, hint 1398… < the phone's
    differs = make_transport(hci, 6, digest="ee" * 8, scan=False)
    phone = make_transport(hci, 9, digest="cc" * 8)  # listens and dials, hint fd17…
    await started(same, smaller, differs, phone)
    try:
        async with contextlib.aclosing(phone.sightings()) as sightings:
            async with asyncio.timeout(10):
                seen = await anext(sightings)
        assert seen.node_id == str(Identity(bytes([6]) * 32).node_id)
        hints = {n.advert.node_hint for n in phone.nearby.values()}
        assert Identity(bytes([1]) * 32).node_id.key[:5] in hints  # heard, not reported
        assert Identity(bytes([8]) * 32).node_id.key[:5] in hints
    finally:
        for transport in (phone, differs, smaller, same):
            await transport.close()


@pytest.mark.slow
async def test_streams_survive_an_emulated_radio_that_drops_gatt_pdus() -> None:
    """Writes without response and notifications lost on the air (as an overflowing
    stack loses them): the links still pass the conformance suite."""
    from bumble.link import LocalLink

    from lichen_ble.controllers import make_link

    link = make_link(loss=0.03, seed=5)
    assert isinstance(link, LocalLink)
    hci = local_link(link)
    board = make_transport(hci, 1, scan=False, link_timeout=60.0)
    phone = make_transport(hci, 2, listen=False, link_timeout=60.0)
    await conformance(board, phone, large=50_000)
    assert link.dropped > 10, "the radio dropped nothing: the test tests nothing"  # type: ignore[attr-defined]


async def test_an_info_read_never_opens_a_second_connection_to_a_dialled_device() -> None:
    """A sighting's info read racing a dial to the same device: the read gives way
    at once (a second connection to one device is refused by the controller only
    after the connect timeout, and broke the next dial)."""
    from agent.errors import TransportError

    hci = local_link()
    board = make_transport(hci, 1, scan=False)
    phone = make_transport(hci, 2, listen=False, connect_timeout=5.0)
    await started(board, phone)
    try:
        outgoing = await phone.connect(f"ble://{Identity(bytes([1]) * 32).node_id}")
        incoming = await board.accept()
        [nearby] = phone.nearby.values()
        async with asyncio.timeout(1.0):
            try:
                await phone.radio.read_info(nearby.address, 5.0)
            except TransportError as exc:
                assert "connected already" in str(exc)
            else:
                raise AssertionError("a second connection to the same device was made")
        await outgoing.send(b"still fine")
        assert await incoming.receive() == b"still fine"
        await outgoing.close()
        await incoming.close()
        again = await phone.connect(f"ble://{Identity(bytes([1]) * 32).node_id}")
        await again.close()
    finally:
        await phone.close()
        await board.close()


@pytest.mark.slow
async def test_a_dial_that_timed_out_leaves_no_connection_to_be_made_later() -> None:
    """The board out of range: the dial times out. When the board is heard again,
    the phone's controller must not connect to it on its own (a connection
    attempt left pending made a connection no one used, and the next dial met
    it as a stale one)."""
    from bumble.link import LocalLink

    from agent.errors import TransportError
    from agent.testing import wait_until

    link = LocalLink()
    hci = local_link(link)
    board = make_transport(hci, 1, scan=False)
    phone = make_transport(hci, 2, listen=False, connect_timeout=1.0)
    await started(board, phone)
    board_id = str(Identity(bytes([1]) * 32).node_id)
    try:
        await wait_until(lambda: phone.nearby, what="the board heard")
        [nearby] = phone.nearby.values()
        away = OutOfRange(link, board.radio.address, budget=1 << 30)
        away.leave()
        with pytest.raises(TransportError):
            await phone.connect(f"ble://{board_id}")
        connections: list[object] = []
        board.radio.device.on("connection", connections.append)
        heard = nearby.seen_at
        away.back()
        await wait_until(lambda: nearby.seen_at > heard + 1.0, what="a second of adverts")
        assert connections == [], "the phone's controller connected on its own"
        stream = await phone.connect(f"ble://{board_id}")
        await stream.close()
    finally:
        await phone.close()
        await board.close()


async def test_a_dial_whose_connect_ind_the_board_missed_connects_again() -> None:
    """The board never hears the phone's first CONNECT_IND (lost on the air, or
    sent as the board restarted its advertising): the phone's controller ends
    that connection after six intervals (0x3E, failed to be established) and
    the dial connects again within its deadline, instead of waiting out the
    deadline on an ATT request no one will answer."""
    from bumble import ll
    from bumble.link import LocalLink

    link: Any = LocalLink()
    hci = local_link(link)
    board = make_transport(hci, 1, scan=False)
    phone = make_transport(hci, 2, listen=False, connect_timeout=10.0)
    await started(board, phone)
    sent: list[Any] = []
    advertise = link.send_advertising_pdu

    def missing_the_first(sender: Any, packet: Any) -> None:
        if isinstance(packet, ll.ConnectInd):
            sent.append(packet)
            if len(sent) == 1:
                return
        advertise(sender, packet)

    link.send_advertising_pdu = missing_the_first
    try:
        outgoing = await phone.connect(f"ble://{Identity(bytes([1]) * 32).node_id}")
        incoming = await board.accept()
        assert len(sent) == 2, "the first CONNECT_IND was not the one that failed"
        await outgoing.send(b"second time lucky")
        assert await incoming.receive() == b"second time lucky"
        await outgoing.close()
        await incoming.close()
    finally:
        await phone.close()
        await board.close()
