"""Registered GATT applications (the peripheral role's GATT server), served
by the adapters' Bumble GATT servers.

``GattManager1.RegisterApplication`` (doc/org.bluez.GattManager.rst): the
stand-in calls the application's ``GetManagedObjects``, builds its services on
the adapter's Bumble GATT server, and from then on calls the application's
``ReadValue``, ``WriteValue``, ``StartNotify`` and ``StopNotify`` as
gatt-database.c does, and notifies subscribers when the application signals
a new ``Value``. An application whose owner leaves the bus is removed, as
BlueZ does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import DBusError, Message, MessageFlag, Variant

from .adapter import AdapterStack
from .calls import BusCalls
from .objects import error

__all__ = ["App", "Applications"]

OM, PROPS = "org.freedesktop.DBus.ObjectManager", "org.freedesktop.DBus.Properties"
CHRC = "org.bluez.GattCharacteristic1"
_PROPERTY_BITS = {
    "broadcast": 0x01,
    "read": 0x02,
    "write-without-response": 0x04,
    "write": 0x08,
    "notify": 0x10,
    "indicate": 0x20,
}


@dataclass
class App:
    """A registered GATT application: its owner, root path, services on the radio."""

    stack: AdapterStack
    sender: str
    path: str
    services: list[Any] = field(default_factory=list)
    chars: dict[str, Any] = field(default_factory=dict)  # object path -> Bumble characteristic
    notifying: dict[str, set[Any]] = field(default_factory=dict)  # path -> subscribed connections


class Applications:
    """The GATT applications registered on ``adapters`` (see the module)."""

    def __init__(self, calls: BusCalls, adapters: list[AdapterStack]) -> None:
        self.calls = calls
        self.apps: list[App] = []
        self.base_services = {a.path: list(a.device.gatt_server.services) for a in adapters}

    async def register(self, stack: AdapterStack, msg: Message) -> None:
        """``RegisterApplication``: read the application's objects, serve its services."""
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        path = msg.body[0]
        if any(a.sender == msg.sender and a.path == path for a in self.apps):
            raise error("AlreadyExists", "Already Exists")
        (objects,) = await self.calls.call(msg.sender, path, OM, "GetManagedObjects")
        app = App(stack, msg.sender, path)
        await self.calls.add_match(
            f"type='signal',sender='{msg.sender}',interface='{PROPS}',member='PropertiesChanged'"
        )
        for service_path, interfaces in sorted(objects.items()):
            service = interfaces.get("org.bluez.GattService1")
            if service is None:
                continue
            characteristics = []
            for char_path, char_interfaces in sorted(objects.items()):
                props = char_interfaces.get(CHRC)
                if props is None or props["Service"].value != service_path:
                    continue
                flags = list(props["Flags"].value)
                bits = sum(_PROPERTY_BITS.get(f, 0) for f in flags)
                permissions = Characteristic.Permissions(
                    (Characteristic.READABLE if "read" in flags else 0)
                    | (Characteristic.WRITEABLE if bits & 0x0C else 0)
                )
                value = CharacteristicValue(
                    read=self._reader(app, char_path), write=self._writer(app, char_path, flags)
                )
                characteristic = Characteristic(
                    props["UUID"].value, Characteristic.Properties(bits), permissions, value
                )
                if bits & 0x30:
                    app.notifying[char_path] = set()
                    characteristic.on("subscription", self._subscriber(app, char_path))
                app.chars[char_path] = characteristic
                characteristics.append(characteristic)
            app.services.append(Service(service["UUID"].value, characteristics))
        if not app.services:
            raise error("Failed", "No object received")
        self.apps.append(app)
        self._rebuild(stack)

    def unregister(self, msg: Message) -> None:
        """``UnregisterApplication``: its services leave the adapter's database."""
        for app in self.apps:
            if app.sender == msg.sender and app.path == msg.body[0]:
                self._drop(app)
                return
        raise error("DoesNotExist", "Does Not Exist")

    def client_gone(self, name: str) -> None:
        """The client ``name`` left the bus: its applications go with it."""
        for app in [a for a in self.apps if a.sender == name]:
            self._drop(app)

    def _drop(self, app: App) -> None:
        self.apps.remove(app)
        self._rebuild(app.stack)

    def _rebuild(self, stack: AdapterStack) -> None:
        """The adapter's GATT database: its own services, then every registered
        application's (handles are given anew, as BlueZ's database does)."""
        server = stack.device.gatt_server
        server.attributes.clear()
        server.attributes_by_handle.clear()
        server.services.clear()
        for service in self.base_services[stack.path]:
            server.add_service(service)
        for app in self.apps:
            if app.stack is stack:
                for service in app.services:
                    server.add_service(service)

    @staticmethod
    def _options(stack: AdapterStack, connection: Any) -> dict[str, Variant]:
        """What gatt-database.c's append_options gives the application: the
        device, the link, the MTU (no "type": a server does not learn whether a
        write was a command or a request)."""
        device = f"{stack.path}/dev_{connection.peer_address.to_string(False).replace(':', '_')}"
        return {
            "device": Variant("o", device),
            "link": Variant("s", "LE"),
            "mtu": Variant("q", int(connection.att_mtu)),
        }

    def _reader(self, app: App, path: str) -> Any:
        async def read(connection: Any) -> bytes:
            options = self._options(app.stack, connection)
            try:
                (value,) = await self.calls.call(
                    app.sender, path, CHRC, "ReadValue", signature="a{sv}", body=[options]
                )
            except DBusError as exc:
                from bumble.att import ATT_Error

                raise ATT_Error(0x0E, message=exc.text) from None  # unlikely error
            return bytes(value)[:512]

        return read

    def _writer(self, app: App, path: str, flags: list[str]) -> Any:
        def write(connection: Any, value: bytes) -> Any:
            options = self._options(app.stack, connection)
            call = Message(
                destination=app.sender,
                path=path,
                interface=CHRC,
                member="WriteValue",
                signature="aya{sv}",
                body=[bytes(value), options],
            )
            if "write" not in flags:
                # A write command: write_setup_cb sends WriteValue and waits for no
                # reply (the ATT command has none); D-Bus keeps their order.
                call.flags = MessageFlag.NO_REPLY_EXPECTED
                self.calls.bus.send(call)
                return None
            return self.calls.call(
                app.sender, path, CHRC, "WriteValue", signature="aya{sv}", body=call.body
            )

        return write

    def _subscriber(self, app: App, path: str) -> Any:
        def changed(bearer: Any, notify: bool, indicate: bool) -> None:
            # ccc_write_cb: StartNotify for every enabling write, StopNotify when
            # the last subscriber goes (a disconnection clears its CCC too)
            connection = getattr(bearer, "connection", bearer)
            subscribed = app.notifying[path]
            if notify or indicate:
                subscribed.add(connection)
                self.calls.spawn(self._call_quietly(app, path, "StartNotify"))
                connection.on("disconnection", lambda reason: changed(connection, False, False))
            elif connection in subscribed:
                subscribed.discard(connection)
                if not subscribed:
                    self.calls.spawn(self._call_quietly(app, path, "StopNotify"))

        return changed

    async def _call_quietly(self, app: App, path: str, member: str) -> None:
        with contextlib.suppress(Exception):  # "ignore the return value for now"
            await self.calls.call(app.sender, path, CHRC, member)

    def value_changed(self, msg: Message) -> None:
        """A client's ``PropertiesChanged``: a new ``Value`` is notified."""
        # property_changed_cb: a new Value of a characteristic with a CCC is sent
        # to every device that enabled it, cut to BT_ATT_MAX_VALUE_LEN (512); the
        # ATT layer cuts a notification to MTU - 3.
        interface, changed, _ = msg.body
        if interface != CHRC or "Value" not in changed:
            return
        for app in self.apps:
            if app.sender == msg.sender and msg.path in app.notifying:
                value = bytes(changed["Value"].value)[:512]
                characteristic = app.chars[msg.path]
                self.calls.spawn(app.stack.device.notify_subscribers(characteristic, value))
