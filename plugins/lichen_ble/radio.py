"""What the BLE transport and every back end's radio share.

A radio (:class:`~lichen_ble.bumble_radio.BumbleRadio`,
:class:`~lichen_ble.bluez_radio.BluezRadio`) is driven by the transport
through ``start``, ``advertise``, ``scan``, ``read_info``, ``dial``,
``close``, ``incoming`` and ``max_incoming``, and calls back through the
:class:`RadioHooks` it is given. Incoming links are opened the same way on
every back end (:meth:`RadioHooks.open_incoming`), and the background tasks
of a radio or the transport live in a :class:`Tasks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.errors import TransportError

from .segments import Mode

if TYPE_CHECKING:
    from .stream import GattStream

__all__ = ["RadioHooks", "Sighted", "Tasks", "abort_streams"]


@dataclass(frozen=True)
class Sighted:
    """One advertisement: the BLE address, its RSSI and its raw data."""

    address: str
    rssi: int
    data: bytes


def _nothing() -> None:
    return None


def _log() -> logging.Logger:
    return logging.getLogger("lichen.transport.ble")


@dataclass
class RadioHooks:
    """What a radio calls: ``info()`` for the info value to serve; ``on_stream``
    with each incoming link once opened; ``on_advert`` with each advertisement
    heard while scanning; ``on_change`` when an incoming connection comes or
    goes (the room to advertise changed). ``link_options`` are the keywords of
    every :class:`~lichen_ble.stream.GattStream` (``link_timeout``). With
    ``on_mule``, incoming links may open in mule mode too and go there instead
    (docs/ble.md, "The mule exchange over GATT")."""

    info: Callable[[], bytes]
    on_stream: Callable[[GattStream], None]
    on_advert: Callable[[Sighted], None] | None = None
    on_change: Callable[[], None] = _nothing
    log: logging.Logger = field(default_factory=_log)
    link_options: dict[str, float] = field(default_factory=dict)
    open_timeout: float = 15.0
    on_mule: Callable[[GattStream], None] | None = None
    serves_mule: Callable[[], bool] = lambda: True

    @property
    def modes(self) -> Collection[Mode]:
        """The link modes incoming links may open in (now)."""
        mule = self.on_mule is not None and self.serves_mule()
        return (Mode.SYNC, Mode.MULE) if mule else (Mode.SYNC,)

    async def open_incoming(self, stream: GattStream) -> bool:
        """Wait for the central's OPEN and hand the link to ``on_stream`` (or
        ``on_mule``, by its mode); False (logged) if it never came."""
        try:
            await stream.open(timeout=self.open_timeout)
        except TransportError as exc:
            self.log.debug("incoming BLE link not opened: %s", exc)
            return False
        if stream.mode is Mode.MULE and self.on_mule is not None:
            self.on_mule(stream)
        else:
            self.on_stream(stream)
        return True


class Tasks:
    """Background tasks, each kept until it ends, all cancelled at once."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()


async def abort_streams(
    streams: Iterable[GattStream], reason: str = "the node is stopping"
) -> None:
    """Abort every stream of ``streams`` (a snapshot is taken first)."""
    for stream in list(streams):
        with contextlib.suppress(Exception):
            await stream.abort(reason)
