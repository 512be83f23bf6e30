"""The asyncio shell of the link core: a :class:`~agent.plugin_api.Stream` over one
GATT connection, whatever Bluetooth stack carries it.

A back end implements :class:`GattBearer` (two methods) for each connection
and calls the stream's three entry points from its own callbacks::

    class MyBearer:                                   # one per GATT connection
        peer = "ble://AA:BB:CC:DD:EE:FF"
        async def write(self, value: bytes) -> None:  # central: rx write without response
            ...                                       # peripheral: tx notification
        async def disconnect(self) -> None: ...

    stream = GattStream(bearer, Role.CENTRAL, mtu=negotiated_mtu)
    on_notification = stream.value_received          # peripheral: on_rx_write
    on_disconnection = stream.disconnected            # with a reason
    await stream.open(timeout=10)                     # OPEN exchanged: a Stream now

All protocol decisions are :class:`~lichen_ble.link.GattLink`'s; this module
only moves values, runs the core's timer, and maps the link's end to
:class:`~agent.errors.TransportError`. One task writes, so values leave in
order and a slow stack holds the writer back (``write`` is awaited).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from agent.errors import TransportError

from .link import (
    NEED_DATA,
    DataReceived,
    EndOfStream,
    GattLink,
    LinkClosed,
    Mode,
    Role,
)
from .segments import DATA_HEADER, CloseCode

__all__ = ["CLOSE_FLUSH_TIMEOUT", "DISCONNECT_TIMEOUT", "GattBearer", "GattStream"]

CLOSE_FLUSH_TIMEOUT = 5.0
"""Seconds :meth:`GattStream.close` waits for the peer to acknowledge what was sent."""
DISCONNECT_TIMEOUT = 3.0
"""Seconds a disconnection may take before the stream stops waiting for it."""


class GattBearer(Protocol):
    """One GATT connection, as a back end gives it to a :class:`GattStream`.

    ``write`` sends one value: a write without response to rx (central) or a
    notification on tx (peripheral); it may wait while the stack is busy and
    raises on a broken connection. ``disconnect`` ends the connection (the
    back end then calls :meth:`GattStream.disconnected`)."""

    @property
    def peer(self) -> str: ...

    async def write(self, value: bytes) -> None: ...

    async def disconnect(self) -> None: ...


class GattStream:
    """A reliable byte stream over ``bearer`` (see the module). ``mtu``: the
    ATT MTU negotiated (call :meth:`mtu_changed` if it is known only later);
    ``mode`` (central: what it opens the link for) and ``modes`` (peripheral:
    what it serves) and ``options`` go to :class:`~lichen_ble.link.GattLink`."""

    def __init__(self, bearer: GattBearer, role: Role, *, mtu: int = 23, **options: Any) -> None:
        self.bearer = bearer
        self.link = GattLink(role, mtu=mtu, **options)
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._opened = asyncio.Event()
        self._closing = False  # close() called: every operation fails from now on
        self._closed_done = asyncio.Event()
        self._eof_seen = False
        self._disconnected = False
        self._end: LinkClosed | None = None
        self._writer = self._loop.create_task(self._write_loop(), name=f"ble-link {bearer.peer}")

    # ----------------------------------------------------- back-end callbacks

    def value_received(self, value: bytes) -> None:
        """A GATT value arrived from the peer (call from the stack's callback)."""
        self.link.receive_data(value, self._loop.time())
        self._poke()

    def mtu_changed(self, mtu: int) -> None:
        self.link.mtu_changed(mtu)

    def disconnected(self, reason: str) -> None:
        """The connection is gone."""
        self._disconnected = True
        self.link.connection_lost(reason)
        self._poke()

    # ----------------------------------------------------------------- opening

    async def open(self, timeout: float = 10.0) -> None:
        """Exchange OPEN (the central starts it); raises :class:`TransportError`
        if the link closes or ``timeout`` passes first (the bearer is disconnected)."""
        self.link.start(self._loop.time())
        self._poke()
        try:
            async with asyncio.timeout(timeout):
                while not self.link.opened:
                    if self.link.closed is not None:
                        raise TransportError(self.link.closed.reason)
                    await self._wait()
        except TimeoutError:
            await self.abort(f"the peer did not open the link within {timeout:g} s")
            raise TransportError(
                f"{self.peer}: the peer did not open the link within {timeout:g} s"
            ) from None
        except BaseException:
            await self.abort("open failed")
            raise

    # ---------------------------------------------------------------- Stream

    @property
    def max_frame_hint(self) -> int:
        return self.link.send_value - DATA_HEADER

    @property
    def peer(self) -> str:
        return self.bearer.peer

    @property
    def mode(self) -> Mode:
        """What the link carries (the peripheral knows once it is open)."""
        return self.link.mode

    async def send(self, data: bytes) -> None:
        view = memoryview(bytes(data))
        while True:
            self._check_sendable()
            if not view:
                return
            room = self.link.send_room
            if room > 0:
                self.link.send(bytes(view[:room]))
                view = view[room:]
                self._poke()
                continue
            await self._wait()

    def _check_sendable(self) -> None:
        if self._closing:
            raise TransportError(f"send on a closed stream to {self.peer}")
        if self.link.closed is not None:
            raise TransportError(f"{self.peer}: {self.link.closed.reason}")
        if self.link.eof:
            raise TransportError("send after send_eof")

    async def send_eof(self) -> None:
        if not self._closing and self.link.closed is None:
            self.link.send_eof()
            self._poke()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        while True:
            if self._closing:
                raise TransportError(f"receive on a closed stream from {self.peer}")
            if self._eof_seen:
                return b""
            event = self.link.next_event(max_bytes)
            if isinstance(event, DataReceived):
                self._poke()  # reading may open the window: an ACK may be due
                return event.data
            if isinstance(event, EndOfStream):
                self._eof_seen = True
                return b""
            if isinstance(event, LinkClosed):
                self._end = event
            if event is NEED_DATA and self._end is not None:
                raise TransportError(f"{self.peer}: {self._end.reason}")
            if event is NEED_DATA:
                await self._wait()

    async def close(self) -> None:
        """Finish (FIN, acknowledged within :data:`CLOSE_FLUSH_TIMEOUT`), CLOSE, and
        disconnect. Idempotent; pending operations end."""
        if self._closing:
            await self._closed_done.wait()
            return
        self._closing = True
        self._poke()
        try:
            if self.link.closed is None and self.link.opened:
                self.link.send_eof()
                self._poke()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                        while not self.link.flushed and self.link.closed is None:
                            if self.link.stalled:  # the peer takes nothing more
                                break
                            await self._wait()
            await self.abort("closed", CloseCode.NORMAL)
        finally:
            self._closed_done.set()

    async def abort(self, reason: str, code: CloseCode = CloseCode.NORMAL) -> None:
        """CLOSE (best effort) and disconnect at once."""
        self.link.close(reason, code)
        self._poke()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._writer)
        self._writer.cancel()
        if not self._disconnected:
            self._disconnected = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(DISCONNECT_TIMEOUT):
                    await self.bearer.disconnect()

    def __repr__(self) -> str:
        return f"<GattStream {self.link.role.value} to {self.peer}>"

    # -------------------------------------------------------------- plumbing

    def _poke(self) -> None:
        self._changed.set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _write_loop(self) -> None:
        """Send what the core has, run its timer, until the link closed and its last
        values (CLOSE) are out."""
        link, loop = self.link, self._loop
        try:
            while True:
                self._changed.clear()
                values = link.data_to_send(loop.time())
                for value in values:
                    await self.bearer.write(value)
                if values:
                    self._poke()  # room for more sends, perhaps
                    continue
                if link.closed is not None:
                    return
                due = link.next_timer()
                if due is None:
                    await self._changed.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(due):
                        await self._changed.wait()
                if loop.time() >= due:
                    link.handle_timer(loop.time())
                    self._poke()
        except Exception as exc:  # the stack failed a write: the connection is gone
            link.connection_lost(f"a write failed: {exc}")
            self._poke()
