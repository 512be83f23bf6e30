"""The stand-in's bus side: ``org.bluez`` on the bus, and the calls that need
their caller.

:class:`FakeBluez` owns ``org.bluez`` on the bus and serves, from a raw
message handler (dbus-fast hands methods no caller):

* ``Adapter1.StartDiscovery/StopDiscovery/SetDiscoveryFilter`` — one session
  and one filter per client, dropped when the client leaves the bus (the
  adapter's :class:`~.adapter.AdapterStack` keeps them);
* ``GattManager1.RegisterApplication/UnregisterApplication``: the
  peripheral role's GATT server, :mod:`.applications`;
* ``LEAdvertisingManager1.RegisterAdvertisement/UnregisterAdvertisement``:
  its advertising, :mod:`.advertising`.

It watches the bus for clients that leave (``NameOwnerChanged``), whose
sessions, applications and advertisements go with them, and for the
applications' ``PropertiesChanged`` (a new ``Value`` to notify). Calls to
clients go through :class:`~.calls.BusCalls`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from .adapter import AdapterStack
from .advertising import Advertisements
from .applications import Applications
from .calls import BusCalls
from .objects import GattManager1, LEAdvertisingManager1

__all__ = ["FakeBluez"]

PROPS = "org.freedesktop.DBus.Properties"
ADAPTER, GATT_MANAGER = "org.bluez.Adapter1", "org.bluez.GattManager1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"


class FakeBluez:
    """``org.bluez`` on ``bus`` for ``adapters`` (see the module). With
    ``experimental`` it honours the ScanResponse* advertisement properties, as
    ``bluetoothd --experimental`` does; without, they are ignored."""

    def __init__(
        self, bus: MessageBus, adapters: list[AdapterStack], *, experimental: bool = False
    ) -> None:
        self.bus, self.adapters = bus, adapters
        self.by_path = {a.path: a for a in adapters}
        self.calls = BusCalls(bus)
        self.applications = Applications(self.calls, adapters)
        self.advertisements = Advertisements(self.calls, experimental=experimental)

    async def start(self) -> None:
        """Export the adapters' objects, watch the bus, and own ``org.bluez``."""
        for stack in self.adapters:
            stack.export()
            self.bus.export(stack.path, GattManager1())
            self.bus.export(stack.path, LEAdvertisingManager1(self.advertisements.counter(stack)))
        self.bus.add_message_handler(self._on_message)
        await self.calls.add_match(
            "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"
        )
        await self.bus.request_name("org.bluez")

    def _on_message(self, msg: Message) -> bool | None:
        if msg.message_type == MessageType.METHOD_CALL and msg.path in self.by_path:
            served = self._served(self.by_path[msg.path], msg)
            if served is not None:
                self.calls.spawn(self.calls.reply(msg, served))
                return True
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.body[2] == "":
                self._client_gone(msg.body[0])
            elif msg.member == "PropertiesChanged" and msg.interface == PROPS:
                self.applications.value_changed(msg)
        return None

    def _served(self, stack: AdapterStack, msg: Message) -> Callable[[], Any] | None:
        """The call this handler serves for ``msg`` on ``stack``'s path, if any."""
        apps, adverts = self.applications, self.advertisements
        return {
            (ADAPTER, "StartDiscovery"): lambda: stack.start_discovery(msg.sender),
            (ADAPTER, "StopDiscovery"): lambda: stack.stop_discovery(msg.sender),
            (ADAPTER, "SetDiscoveryFilter"): lambda: stack.set_discovery_filter(
                msg.sender, msg.body[0]
            ),
            (GATT_MANAGER, "RegisterApplication"): lambda: apps.register(stack, msg),
            (GATT_MANAGER, "UnregisterApplication"): lambda: apps.unregister(msg),
            (ADV_MANAGER, "RegisterAdvertisement"): lambda: adverts.register(stack, msg),
            (ADV_MANAGER, "UnregisterAdvertisement"): lambda: adverts.unregister(msg),
        }.get((msg.interface or "", msg.member or ""))

    def _client_gone(self, name: str) -> None:
        for stack in self.adapters:
            stack.client_gone(name)
        self.applications.client_gone(name)
        self.advertisements.client_gone(name)
