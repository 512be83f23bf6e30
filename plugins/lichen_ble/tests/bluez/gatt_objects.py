"""The stand-in's D-Bus objects for a connected device's GATT database, as
BlueZ exports it to a client (the central role): ``org.bluez.GattService1``,
``GattCharacteristic1`` and ``GattDescriptor1`` (doc/org.bluez.Gatt*.rst).

Each object proxies one attribute of the peer through the Bumble client of
its :class:`~.adapter.RemoteDevice`: reads and writes go over the air, and
notifications come back as ``PropertiesChanged`` on ``Value``, as BlueZ's
gatt-client.c does. The adapter and device objects are in :mod:`.objects`.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus
signatures from the annotations at run time.
"""

from typing import TYPE_CHECKING, Any

from dbus_fast.annotations import DBusBool, DBusBytes, DBusDict, DBusObjectPath, DBusStr, DBusUInt16
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from .objects import READ, DBusStrs, error, fixed

if TYPE_CHECKING:
    from .adapter import RemoteDevice

__all__ = ["GattCharacteristic1", "GattDescriptor1", "GattService1"]


class GattService1(ServiceInterface):
    """``…/dev_…/serviceXXXX``: a remote primary service (doc/org.bluez.GattService.rst)."""

    def __init__(self, uuid: str, device_path: str, handle: int) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid, self.device_path, self.handle = uuid, device_path, handle

    @dbus_property(access=READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return self.uuid

    Primary = fixed("Primary", "b", True)

    @dbus_property(access=READ)
    def Device(self) -> DBusObjectPath:  # noqa: N802
        return self.device_path

    Includes = fixed("Includes", "ao", [])

    @dbus_property(access=READ)
    def Handle(self) -> DBusUInt16:  # noqa: N802
        return self.handle


_FLAGS = [
    (0x01, "broadcast"),
    (0x02, "read"),
    (0x04, "write-without-response"),
    (0x08, "write"),
    (0x10, "notify"),
    (0x20, "indicate"),
]


class GattCharacteristic1(ServiceInterface):
    """``…/serviceXXXX/charYYYY``: a remote characteristic, proxied to the peer by
    Bumble (doc/org.bluez.GattCharacteristic.rst, the client part)."""

    def __init__(self, proxy: Any, service_path: str, device: "RemoteDevice") -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.proxy, self.service_path, self.device = proxy, service_path, device
        self.value = b""
        self.notifying = False
        self.sessions = 0
        self.writing = False

    @property
    def flags(self) -> list[str]:
        return [name for bit, name in _FLAGS if int(self.proxy.properties) & bit]

    @dbus_method()
    async def ReadValue(self, options: DBusDict) -> DBusBytes:  # noqa: N802
        if "read" not in self.flags:
            raise error("NotPermitted", "Read not permitted")
        offset = options["offset"].value if "offset" in options else 0
        try:
            value = bytes(await self.proxy.read_value())
        except Exception as exc:
            raise error("Failed", f"Operation failed with ATT error: {exc}") from None
        # "Value: the cached value ... updated only after a successful read request
        # and when a notification or indication is received, upon which a
        # PropertiesChanged signal will be emitted."
        self.value = value
        self.emit_properties_changed({"Value": value})
        return value[offset:]

    @dbus_method()
    async def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:  # noqa: N802
        # The procedure as gatt-client.c chooses it: "request" (or no type and a
        # "write" flag) is a write request; "command" (or no type, and only
        # "write-without-response") a write command, answered at once, before
        # anything reaches the air — a write without response can still be lost.
        kind = options["type"].value if "type" in options else None
        flags = self.flags
        connection = self.device.connection
        if connection is None:
            raise error("Failed", "Not connected")
        if kind == "request" or (kind is None and "write" in flags):
            if "write" not in flags:
                raise error("NotSupported", "Operation is not supported")
            if self.writing:
                raise error("InProgress", "In Progress")
            self.writing = True
            try:
                await self.proxy.write_value(bytes(value), with_response=True)
            except Exception as exc:
                raise error("Failed", f"Operation failed with ATT error: {exc}") from None
            finally:
                self.writing = False
            return
        if kind not in (None, "command") or "write-without-response" not in flags:
            raise error("NotSupported", "Operation is not supported")
        if len(value) > connection.att_mtu - 3:  # bt_att_send refuses it
            raise error("Failed", "Failed to initiate write")
        await self.proxy.write_value(bytes(value), with_response=False)

    @dbus_method()
    async def StartNotify(self) -> None:  # noqa: N802
        if not {"notify", "indicate"} & set(self.flags):
            raise error("NotSupported", "Operation is not supported")
        self.sessions += 1
        if self.notifying:
            return
        try:
            await self.proxy.subscribe(self._notified, prefer_notify=True)
        except Exception as exc:
            self.sessions -= 1
            raise error("Failed", f"Operation failed: {exc}") from None
        self.notifying = True
        self.emit_properties_changed({"Notifying": True})

    @dbus_method()
    async def StopNotify(self) -> None:  # noqa: N802
        # "notifications from a characteristic are shared between sessions thus
        # calling StopNotify will release a single session"
        if not self.notifying:
            raise error("Failed", "No notify session started")
        self.sessions -= 1
        if self.sessions > 0:
            return
        self.notifying = False
        try:
            await self.proxy.unsubscribe(self._notified)
        finally:
            self.emit_properties_changed({"Notifying": False})

    def _notified(self, value: bytes) -> None:
        # Notifications reach D-Bus clients as PropertiesChanged on Value.
        self.value = bytes(value)
        self.emit_properties_changed({"Value": self.value})

    @dbus_property(access=READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return str(self.proxy.uuid).lower()

    @dbus_property(access=READ)
    def Service(self) -> DBusObjectPath:  # noqa: N802
        return self.service_path

    @dbus_property(access=READ)
    def Value(self) -> DBusBytes:  # noqa: N802
        return self.value

    @dbus_property(access=READ)
    def Notifying(self) -> DBusBool:  # noqa: N802
        return self.notifying

    @dbus_property(access=READ)
    def Flags(self) -> DBusStrs:  # noqa: N802
        return self.flags

    @dbus_property(access=READ)
    def Handle(self) -> DBusUInt16:  # noqa: N802
        return int(self.proxy.handle)

    @dbus_property(access=READ)
    def MTU(self) -> DBusUInt16:  # noqa: N802
        connection = self.device.connection
        return int(connection.att_mtu) if connection is not None else 23


class GattDescriptor1(ServiceInterface):
    """``…/charYYYY/descZZZZ`` (doc/org.bluez.GattDescriptor.rst)."""

    def __init__(self, proxy: Any, characteristic_path: str) -> None:
        super().__init__("org.bluez.GattDescriptor1")
        self.proxy, self.characteristic_path = proxy, characteristic_path

    @dbus_method()
    async def ReadValue(self, options: DBusDict) -> DBusBytes:  # noqa: N802
        try:
            return bytes(await self.proxy.read_value())
        except Exception as exc:
            raise error("Failed", f"Operation failed with ATT error: {exc}") from None

    @dbus_property(access=READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return str(self.proxy.type).lower()

    @dbus_property(access=READ)
    def Characteristic(self) -> DBusObjectPath:  # noqa: N802
        return self.characteristic_path

    Value = fixed("Value", "ay", b"")

    @dbus_property(access=READ)
    def Handle(self) -> DBusUInt16:  # noqa: N802
        return int(self.proxy.handle)
