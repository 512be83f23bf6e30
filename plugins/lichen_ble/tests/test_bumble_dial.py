"""A Bumble dial's failures over emulated controllers in one process (LocalLink):
the connection ending mid-request, one deadline for the whole dial, a
cancelled dial; each leaves no connection behind and the next dial works."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.errors import TransportError
from agent.identity import Identity
from agent.testing import wait_until
from lichen_ble import BleTransport

from .helpers import (
    READ_REQUEST,
    WRITE_COMMAND,
    WRITE_REQUEST,
    AttOnAir,
    OutOfRange,
    local_link,
    make_transport,
)

BOARD = f"ble://{Identity(bytes([1]) * 32).node_id}"


def no_connection(phone: BleTransport) -> bool:
    return not phone.radio.device.connections


async def a_link_works(phone: BleTransport, board: BleTransport, text: bytes) -> None:
    """The phone dials the board again and the link carries ``text``."""
    outgoing = await phone.connect(BOARD)
    incoming = await board.accept()
    await outgoing.send(text)
    assert await incoming.receive() == text
    await outgoing.close()
    await incoming.close()


async def resolved(link: Any, connect_timeout: float = 10.0) -> tuple[Any, ...]:
    """A board and a phone on ``link``, started, the phone knowing the board's
    node key (its own info read on sighting is over), and the radio's ATT PDUs."""
    on_air = AttOnAir(link)
    hci = local_link(link)
    board = make_transport(hci, 1, digest="aa" * 8, scan=False)  # other heads: info read
    phone = make_transport(hci, 2, listen=False, connect_timeout=connect_timeout)
    await board.start()
    await phone.start()
    await wait_until(
        lambda: any(n.node for n in phone.nearby.values()) and no_connection(phone),
        what="the board's info read",
    )
    return board, phone, on_air


@pytest.mark.parametrize(
    ("opcode", "step"), [(READ_REQUEST, "reading info"), (WRITE_REQUEST, "subscribing")]
)
async def test_a_connection_ending_under_a_dials_request_fails_it_as_a_transport_error(
    opcode: int, step: str
) -> None:
    """The board goes out of range as the phone's dial reads its info or subscribes:
    Bumble cancels the pending request, and the dial fails with a TransportError
    naming the step (it was a CancelledError, as if the dial had been cancelled).
    The next dial works."""
    from bumble.link import LocalLink

    board, phone, on_air = await resolved(LocalLink())
    try:
        on_air.arm(opcode, cut=True)
        with pytest.raises(TransportError, match=f"ended while {step}"):
            await phone.connect(BOARD)
        assert on_air.hit.is_set()
        await wait_until(lambda: no_connection(phone), what="the connection gone")
        await a_link_works(phone, board, b"back in range")
    finally:
        await phone.close()
        await board.close()


async def test_a_connection_ending_under_an_info_read_fails_it_as_a_transport_error() -> None:
    from bumble.link import LocalLink

    board, phone, on_air = await resolved(LocalLink())
    try:
        [nearby] = phone.nearby.values()
        on_air.arm(READ_REQUEST, cut=True)
        with pytest.raises(TransportError, match="ended while reading info"):
            await phone.radio.read_info(nearby.address, 5.0)
        await wait_until(lambda: no_connection(phone), what="the connection gone")
        await a_link_works(phone, board, b"read again")
    finally:
        await phone.close()
        await board.close()


async def test_a_cancelled_dial_is_cancelled_and_leaves_no_connection() -> None:
    """The board never answers the info read; the dial's caller gives up on it:
    the cancellation goes through as one, and the connection is hung up."""
    from bumble.link import LocalLink

    board, phone, on_air = await resolved(LocalLink())
    try:
        on_air.arm(READ_REQUEST)
        dial = asyncio.ensure_future(phone.connect(BOARD))
        async with asyncio.timeout(5.0):
            await on_air.hit.wait()
        assert not no_connection(phone)
        dial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dial
        await wait_until(lambda: no_connection(phone), what="the connection hung up")
        await a_link_works(phone, board, b"after the cancel")
    finally:
        await phone.close()
        await board.close()


@pytest.mark.slow
async def test_a_dials_steps_share_one_connect_timeout() -> None:
    """The board is heard only after most of ``connect_timeout`` and then never
    takes the link's OPEN: the dial fails when ``connect_timeout`` is up, in the
    step it was in (before, finding, connecting and opening each had the whole
    timeout: almost twice as long here, and up to three times in all)."""
    from bumble.link import LocalLink

    timeout = 2.0
    link = LocalLink()
    hci = local_link(link)
    board = make_transport(hci, 1, scan=False)
    phone = make_transport(hci, 2, listen=False, connect_timeout=timeout)
    await board.start()
    away = OutOfRange(link, board.radio.address, budget=1 << 30)
    away.leave()
    on_air = AttOnAir(link)
    await phone.start()
    loop = asyncio.get_running_loop()
    try:
        on_air.arm(WRITE_COMMAND, every=True)  # the OPEN (and its resends) lost
        loop.call_later(0.75 * timeout, away.back)
        started = loop.time()
        with pytest.raises(TransportError, match="timed out while opening the link"):
            await phone.connect(BOARD)
        took = loop.time() - started
        assert on_air.hit.is_set(), "the phone never got as far as the OPEN"
        assert took < 1.5 * timeout, f"the dial took {took:.2f} s, connect_timeout {timeout} s"
        await wait_until(lambda: no_connection(phone), what="the connection hung up")
        on_air.arm(None)
        await a_link_works(phone, board, b"in time")
    finally:
        await phone.close()
        await board.close()
