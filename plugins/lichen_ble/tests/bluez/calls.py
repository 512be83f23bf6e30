"""The stand-in's side of a D-Bus conversation with its clients.

BlueZ calls its clients back: a registered application's
``GetManagedObjects``, ``ReadValue`` and ``WriteValue``, an advertisement's
properties. :class:`BusCalls` makes those calls (a client's D-Bus error comes
back as a :class:`~dbus_fast.DBusError`), answers the calls the message
handler serves, and runs their work as tasks it keeps until they end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from dbus_fast import DBusError, Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

__all__ = ["BusCalls"]

log = logging.getLogger("fake-bluez")


class BusCalls:
    """Calls to and replies from ``org.bluez`` on ``bus``."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task, kept until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reply(self, msg: Message, call: Callable[[], Any]) -> None:
        """Answer ``msg`` with what ``call`` (a function, or one returning a
        coroutine) gives: an empty return, or the error it raised (a
        ``DBusError`` as it is, anything else as ``org.bluez.Error.Failed``)."""
        try:
            result = call()
            if asyncio.iscoroutine(result):
                await result
            reply = Message.new_method_return(msg)
        except DBusError as exc:
            reply = Message.new_error(msg, exc.type, exc.text)
        except Exception as exc:
            log.exception("%s failed", msg.member)
            reply = Message.new_error(msg, "org.bluez.Error.Failed", repr(exc))
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            self.bus.send(reply)

    async def add_match(self, rule: str) -> None:
        """Receive the signals ``rule`` matches (``org.freedesktop.DBus.AddMatch``)."""
        await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )

    async def call(
        self,
        sender: str,
        path: str,
        interface: str,
        member: str,
        *,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        """Call ``member`` on the client ``sender``'s object; its reply's body."""
        reply = await self.bus.call(
            Message(
                destination=sender,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise DBusError(
                reply.error_name or "org.bluez.Error.Failed",
                str(reply.body[0] if reply.body else ""),
            )
        return list(reply.body)
