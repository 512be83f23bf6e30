"""A Bumble central's connection set-up: connect, exchange the MTU, discover.

:class:`~lichen_ble.bumble_radio.BumbleRadio` dials and reads info through
these two steps, timed by one :class:`Deadline` for the whole dial.
:func:`connect_le` makes the connection and leaves no attempt pending when
it gives up; :func:`set_up` exchanges the MTU and
discovers Lichen's service, watching the connection meanwhile: a connection
can end before its first ATT request is answered — above all one whose
peer never heard the CONNECT_IND, which the central's controller ends after
six connection intervals with reason 0x3E (:data:`NOT_ESTABLISHED`, Core
Vol 6, Part B, 4.5.2; a radio loses a CONNECT_IND now and then, and the
dialler connects again) — and Bumble then either cancels the request
(a ``CancelledError`` that is no cancellation of ours) or leaves it waiting
for its 30 s ATT timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agent.errors import TransportError

from .service import SERVICE_UUID

__all__ = ["ATT_MTU", "NOT_ESTABLISHED", "Deadline", "connect_le", "set_up"]

ATT_MTU = 517
NOT_ESTABLISHED = 0x3E
"""The disconnection reason of a connection whose peer never answered (Connection
Failed to be Established)."""


class Deadline:
    """The one deadline that every step of a dial (or, ``what`` says, of an info
    read) to ``peer`` shares, ``timeout`` seconds from now. Each step runs in
    :meth:`step`, which names it in the :class:`TransportError` raised when
    time runs out, or when the connection ends under a pending ATT request:
    Bumble cancels the request, a ``CancelledError`` that is no cancellation
    of the caller's task. A real cancellation of the caller goes through."""

    def __init__(self, peer: str, timeout: float, what: str = "dialling") -> None:
        self.peer, self.what = peer, what
        self.at = asyncio.get_running_loop().time() + timeout
        self.doing = "starting"

    def left(self) -> float:
        """Seconds left (0 when none are)."""
        return max(0.0, self.at - asyncio.get_running_loop().time())

    def timed_out(self) -> TransportError:
        return TransportError(f"{self.what} {self.peer} timed out while {self.doing}")

    @contextlib.asynccontextmanager
    async def step(self, doing: str) -> AsyncIterator[None]:
        """Run the step ``doing`` ("connecting", "reading info", …) within the deadline."""
        from bumble.core import TimeoutError as BumbleTimeout

        self.doing = doing
        try:
            async with asyncio.timeout_at(self.at):
                yield
        except (TimeoutError, BumbleTimeout):
            raise self.timed_out() from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise TransportError(
                f"the connection to {self.peer} ended while {self.doing}"
            ) from None


async def connect_le(device: Any, address: Any, timeout: float) -> Any:
    """``device`` (a Bumble ``Device``) connects to ``address`` within ``timeout``
    seconds. Bumble's own timeout cancels the controller's attempt; a cancelled
    caller cancels it too, or the controller would connect when the device is
    next heard, to no use, and refuse every other connect meanwhile."""
    from bumble.hci import HCI_LE_Create_Connection_Cancel_Command

    try:
        return await device.connect(address, timeout=timeout)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await device.send_command(HCI_LE_Create_Connection_Cancel_Command())
        raise


async def set_up(device: Any, connection: Any, address: str) -> tuple[int | None, Any]:
    """The MTU exchange and the discovery of Lichen's service on ``connection``
    (just made by ``device``, to ``address``): ``(None, service)``, or
    ``(reason, None)`` if the connection ended first. Any other failure
    disconnects and raises; the caller bounds the time."""
    from bumble.core import UUID
    from bumble.device import Peer

    async def discover() -> Any:
        peer = Peer(connection)
        await peer.request_mtu(ATT_MTU)
        await peer.discover_services([UUID(str(SERVICE_UUID))])
        services = peer.get_services_by_uuid(UUID(str(SERVICE_UUID)))
        if not services:
            raise TransportError(f"ble://{address} serves no Lichen service")
        await services[0].discover_characteristics()
        return services[0]

    ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_end(reason: int) -> None:
        if not ended.done():
            ended.set_result(reason)

    connection.on("disconnection", on_end)
    if device.lookup_connection(connection.handle) is not connection:
        on_end(NOT_ESTABLISHED)  # it ended before we could listen: the reason is lost
    steps = asyncio.ensure_future(discover())
    try:
        await asyncio.wait((steps, ended), return_when=asyncio.FIRST_COMPLETED)
        return (ended.result(), None) if ended.done() else (None, steps.result())
    except BaseException:
        if not ended.done():  # (disconnecting an ended connection never returns)
            with contextlib.suppress(Exception):
                await connection.disconnect()
        raise
    finally:
        connection.remove_listener("disconnection", on_end)
        if not steps.done():
            steps.cancel()
        elif not steps.cancelled():
            steps.exception()  # retrieved: the connection's end is what counts
