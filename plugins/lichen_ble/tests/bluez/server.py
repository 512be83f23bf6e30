"""The stand-in's bus side: the calls that need their caller, and the peripheral role.

:class:`FakeBluez` owns ``org.bluez`` on the bus and serves, from a raw
message handler (dbus-fast hands methods no caller):

* ``Adapter1.StartDiscovery/StopDiscovery/SetDiscoveryFilter`` — one session
  and one filter per client, dropped when the client leaves the bus;
* ``GattManager1.RegisterApplication/UnregisterApplication``
  (doc/org.bluez.GattManager.rst): it calls the application's
  ``GetManagedObjects``, builds the services on the adapter's Bumble GATT
  server, and from then on calls the application's ``ReadValue``,
  ``WriteValue``, ``StartNotify`` and ``StopNotify`` as gatt-database.c does,
  and notifies subscribers when the application signals a new ``Value``;
* ``LEAdvertisingManager1.RegisterAdvertisement/UnregisterAdvertisement``
  (doc/org.bluez.LEAdvertisingManager.rst): it reads the advertisement's
  properties and advertises them, 31 bytes at most (legacy advertising).

An application or advertisement whose owner leaves the bus is removed, as
BlueZ does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import DBusError, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from .adapter import AdapterStack
from .objects import GattManager1, LEAdvertisingManager1, error

__all__ = ["FakeBluez"]

log = logging.getLogger("fake-bluez")

OM, PROPS = "org.freedesktop.DBus.ObjectManager", "org.freedesktop.DBus.Properties"
ADAPTER, GATT_MANAGER = "org.bluez.Adapter1", "org.bluez.GattManager1"
ADV_MANAGER, CHRC = "org.bluez.LEAdvertisingManager1", "org.bluez.GattCharacteristic1"
LEGACY_ADV_MAX = 31
_PROPERTY_BITS = {
    "broadcast": 0x01,
    "read": 0x02,
    "write-without-response": 0x04,
    "write": 0x08,
    "notify": 0x10,
    "indicate": 0x20,
}


def _uuid_ad(uuids: list[str], complete: bool = True) -> bytes:
    """AD structures listing ``uuids`` (grouped by size, as BlueZ's bt_ad does)."""
    out = b""
    for size, kind in ((2, 0x03), (4, 0x05), (16, 0x07)):
        raw = b""
        for text in uuids:
            value = uuid.UUID(text)
            short = value.int >> 96 if str(value).endswith("-0000-1000-8000-00805f9b34fb") else -1
            width = 2 if 0 <= short < 1 << 16 else 4 if 0 <= short < 1 << 32 else 16
            if width == size:
                raw += value.bytes[::-1] if size == 16 else short.to_bytes(size, "little")
        if raw:
            out += bytes([len(raw) + 1, kind - (0 if complete else 1)]) + raw
    return out


def _service_data_ad(data: dict[str, Any]) -> bytes:
    out = b""
    for text, value in data.items():
        key = uuid.UUID(
            text if len(text) > 8 else f"{int(text, 16):08x}-0000-1000-8000-00805f9b34fb"
        )
        payload = bytes(value.value if isinstance(value, Variant) else value)
        if str(key).endswith("-0000-1000-8000-00805f9b34fb") and key.int >> 96 < 1 << 16:
            body = bytes([0x16]) + (key.int >> 96).to_bytes(2, "little") + payload
        else:
            body = bytes([0x21]) + key.bytes[::-1] + payload
        out += bytes([len(body)]) + body
    return out


@dataclass
class App:
    """A registered GATT application: its owner, root path, services on the radio."""

    stack: AdapterStack
    sender: str
    path: str
    services: list[Any] = field(default_factory=list)
    chars: dict[str, Any] = field(default_factory=dict)  # object path -> Bumble characteristic
    notifying: dict[str, set[Any]] = field(default_factory=dict)  # path -> subscribed connections


@dataclass
class Advert:
    stack: AdapterStack
    sender: str
    path: str


class FakeBluez:
    """``org.bluez`` on ``bus`` for ``adapters`` (see the module). With
    ``experimental`` it honours the ScanResponse* advertisement properties, as
    ``bluetoothd --experimental`` does; without, they are ignored."""

    def __init__(
        self, bus: MessageBus, adapters: list[AdapterStack], *, experimental: bool = False
    ) -> None:
        self.bus, self.adapters, self.experimental = bus, adapters, experimental
        self.by_path = {a.path: a for a in adapters}
        self.apps: list[App] = []
        self.adverts: list[Advert] = []
        self.base_services = {a.path: list(a.device.gatt_server.services) for a in adapters}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        for stack in self.adapters:
            stack.export()
            self.bus.export(stack.path, GattManager1())
            self.bus.export(stack.path, LEAdvertisingManager1(self._counter(stack)))
        self.bus.add_message_handler(self._on_message)
        await self._add_match(
            "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"
        )
        await self.bus.request_name("org.bluez")

    def _counter(self, stack: AdapterStack) -> Callable[[], int]:
        return lambda: len(self.adverts_of(stack))

    def adverts_of(self, stack: AdapterStack) -> list[Advert]:
        return [a for a in self.adverts if a.stack is stack]

    # -------------------------------------------------------------- dispatch

    def _on_message(self, msg: Message) -> bool | None:
        if msg.message_type == MessageType.METHOD_CALL and msg.path in self.by_path:
            stack = self.by_path[msg.path]
            served = {
                (ADAPTER, "StartDiscovery"): lambda: stack.start_discovery(msg.sender),
                (ADAPTER, "StopDiscovery"): lambda: stack.stop_discovery(msg.sender),
                (ADAPTER, "SetDiscoveryFilter"): lambda: self._set_filter(stack, msg),
                (GATT_MANAGER, "RegisterApplication"): lambda: self._register_app(stack, msg),
                (GATT_MANAGER, "UnregisterApplication"): lambda: self._unregister_app(msg),
                (ADV_MANAGER, "RegisterAdvertisement"): lambda: self._register_adv(stack, msg),
                (ADV_MANAGER, "UnregisterAdvertisement"): lambda: self._unregister_adv(msg),
            }.get((msg.interface or "", msg.member or ""))
            if served is not None:
                self._spawn(self._reply(msg, served))
                return True
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.body[2] == "":
                self._client_gone(msg.body[0])
            elif msg.member == "PropertiesChanged" and msg.interface == PROPS:
                self._app_value_changed(msg)
        return None

    async def _reply(self, msg: Message, call: Any) -> None:
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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add_match(self, rule: str) -> None:
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

    async def _call(
        self,
        sender: str,
        path: str,
        interface: str,
        member: str,
        *,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
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

    def _set_filter(self, stack: AdapterStack, msg: Message) -> None:
        stack.set_discovery_filter(msg.sender, msg.body[0])

    def _client_gone(self, name: str) -> None:
        for stack in self.adapters:
            stack.client_gone(name)
        for app in [a for a in self.apps if a.sender == name]:
            self._drop_app(app)
        for advert in [a for a in self.adverts if a.sender == name]:
            self.adverts.remove(advert)
            self._spawn(advert.stack.device.stop_advertising())

    # ----------------------------------------------------------- GATT server

    async def _register_app(self, stack: AdapterStack, msg: Message) -> None:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        path = msg.body[0]
        if any(a.sender == msg.sender and a.path == path for a in self.apps):
            raise error("AlreadyExists", "Already Exists")
        (objects,) = await self._call(msg.sender, path, OM, "GetManagedObjects")
        app = App(stack, msg.sender, path)
        await self._add_match(
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

    def _unregister_app(self, msg: Message) -> None:
        for app in self.apps:
            if app.sender == msg.sender and app.path == msg.body[0]:
                self._drop_app(app)
                return
        raise error("DoesNotExist", "Does Not Exist")

    def _drop_app(self, app: App) -> None:
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
                (value,) = await self._call(
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
                self.bus.send(call)
                return None
            return self._call(
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
                self._spawn(self._call_quietly(app, path, "StartNotify"))
                connection.on("disconnection", lambda reason: changed(connection, False, False))
            elif connection in subscribed:
                subscribed.discard(connection)
                if not subscribed:
                    self._spawn(self._call_quietly(app, path, "StopNotify"))

        return changed

    async def _call_quietly(self, app: App, path: str, member: str) -> None:
        with contextlib.suppress(Exception):  # "ignore the return value for now"
            await self._call(app.sender, path, CHRC, member)

    def _app_value_changed(self, msg: Message) -> None:
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
                self._spawn(app.stack.device.notify_subscribers(characteristic, value))

    # ------------------------------------------------------------ advertising

    async def _register_adv(self, stack: AdapterStack, msg: Message) -> None:
        path = msg.body[0]
        if any(a.sender == msg.sender and a.path == path for a in self.adverts):
            raise error("AlreadyExists", "Already Exists")
        if self.adverts_of(stack):  # one legacy advertising set on this controller
            raise error("NotPermitted", "Maximum advertisements reached")
        (props,) = await self._call(
            msg.sender, path, PROPS, "GetAll", signature="s", body=["org.bluez.LEAdvertisement1"]
        )
        value = {k: v.value for k, v in props.items() if v is not None}
        kind = value.get("Type")
        if kind not in ("broadcast", "peripheral"):
            raise error("Failed", "Failed to parse advertisement.")
        discoverable = bool(value.get("Discoverable", stack.discoverable))
        data = bytes([2, 0x01, (0x02 if discoverable else 0) | 0x04])  # flags, LE only
        data += _uuid_ad(list(value.get("ServiceUUIDs") or []))
        data += _service_data_ad(value.get("ServiceData") or {})
        for company, extra in (value.get("ManufacturerData") or {}).items():
            body = bytes([0xFF]) + int(company).to_bytes(2, "little") + bytes(extra.value)
            data += bytes([len(body)]) + body
        name = value.get("LocalName") or (
            stack.name if "local-name" in (value.get("Includes") or []) else None
        )
        if name:
            data += bytes([len(name.encode()) + 1, 0x09]) + name.encode()
        scan_response = b""
        if self.experimental:  # the ScanResponse* parsers are experimental in advertising.c
            scan_response += _uuid_ad(list(value.get("ScanResponseServiceUUIDs") or []))
            scan_response += _service_data_ad(value.get("ScanResponseServiceData") or {})
        if len(data) > LEGACY_ADV_MAX or len(scan_response) > LEGACY_ADV_MAX:
            # refresh_legacy_adv: "Advertising data too long or couldn't be generated."
            raise error("Failed", "Failed to parse advertisement.")
        from bumble.device import AdvertisingType

        advertising_type = (
            AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE
            if kind == "peripheral"
            else AdvertisingType.UNDIRECTED_SCANNABLE
        )
        # the kernel enables advertising again after a connection: auto_restart
        await stack.device.start_advertising(
            advertising_type=advertising_type,
            advertising_data=data,
            scan_response_data=scan_response,
            auto_restart=True,
            advertising_interval_min=100,
            advertising_interval_max=100,
        )
        self.adverts.append(Advert(stack, msg.sender, path))

    async def _unregister_adv(self, msg: Message) -> None:
        for advert in self.adverts:
            if advert.sender == msg.sender and advert.path == msg.body[0]:
                self.adverts.remove(advert)
                await advert.stack.device.stop_advertising()
                return
        raise error("DoesNotExist", "Does Not Exist")
