"""The stand-in's D-Bus objects on the client (central) side of BlueZ's API:
``org.bluez.Adapter1``, ``Device1``, ``GattService1``, ``GattCharacteristic1``
and ``GattDescriptor1``, as BlueZ's ``doc/org.bluez.*.rst`` describe them.

Each object only translates between D-Bus and its :class:`~.adapter.AdapterStack`
(the Bumble host that is the adapter's radio); the behaviour is there.
BlueZ's error names are kept (``org.bluez.Error.*``), so a client sees what
it would see on a board.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus
signatures from the annotations at run time.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusByte,
    DBusBytes,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

if TYPE_CHECKING:
    from .adapter import AdapterStack, RemoteDevice

__all__ = [
    "FAILED",
    "Adapter1",
    "Device1",
    "GattCharacteristic1",
    "GattDescriptor1",
    "GattManager1",
    "GattService1",
    "LEAdvertisingManager1",
    "error",
]

DBusStrs = Annotated[list[str], DBusSignature("as")]
DBusObjectPaths = Annotated[list[str], DBusSignature("ao")]
DBusManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
READ = PropertyAccess.READ

FAILED = "org.bluez.Error.Failed"


def error(name: str, text: str) -> DBusError:
    """A BlueZ error reply: ``org.bluez.Error.<name>``."""
    return DBusError(f"org.bluez.Error.{name}", text)


class Adapter1(ServiceInterface):
    """``/org/bluez/hciN`` (doc/org.bluez.Adapter.rst)."""

    def __init__(self, stack: "AdapterStack") -> None:
        super().__init__("org.bluez.Adapter1")
        self.stack = stack

    # Discovery is a session per D-Bus client ("StopDiscovery ... will only release
    # a single session", Adapter.rst), so these calls need their caller: the
    # stand-in's message handler serves them (see ``server.FakeBluez``) before
    # dbus-fast would reach these declarations, which are here for introspection.
    @dbus_method()
    def StartDiscovery(self) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")

    @dbus_method()
    def StopDiscovery(self) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")

    @dbus_method()
    def SetDiscoveryFilter(self, properties: DBusDict) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")

    @dbus_method()
    def GetDiscoveryFilters(self) -> DBusStrs:  # noqa: N802
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"]

    @dbus_method()
    async def RemoveDevice(self, device: DBusObjectPath) -> None:  # noqa: N802
        await self.stack.remove_device(device)

    @dbus_property(access=READ)
    def Address(self) -> DBusStr:  # noqa: N802
        return str(self.stack.address)

    @dbus_property(access=READ)
    def AddressType(self) -> DBusStr:  # noqa: N802
        return "random"

    @dbus_property(access=READ)
    def Name(self) -> DBusStr:  # noqa: N802
        return self.stack.name

    @dbus_property(access=READ)
    def Alias(self) -> DBusStr:  # noqa: N802
        return self.stack.name

    @dbus_property()
    def Powered(self) -> DBusBool:  # noqa: N802
        return self.stack.powered

    @Powered.setter  # type: ignore[no-redef]
    def Powered(self, value: DBusBool) -> None:  # noqa: N802
        self.stack.powered = bool(value)

    @dbus_property()
    def Discoverable(self) -> DBusBool:  # noqa: N802
        return self.stack.discoverable

    @Discoverable.setter  # type: ignore[no-redef]
    def Discoverable(self, value: DBusBool) -> None:  # noqa: N802
        self.stack.discoverable = bool(value)

    @dbus_property(access=READ)
    def Pairable(self) -> DBusBool:  # noqa: N802
        return False

    @dbus_property(access=READ)
    def Discovering(self) -> DBusBool:  # noqa: N802
        return self.stack.discovering

    @dbus_property(access=READ)
    def Roles(self) -> DBusStrs:  # noqa: N802
        return ["central", "peripheral"]

    @dbus_property(access=READ)
    def UUIDs(self) -> DBusStrs:  # noqa: N802
        return []


class Device1(ServiceInterface):
    """``/org/bluez/hciN/dev_XX_XX_XX_XX_XX_XX`` (doc/org.bluez.Device.rst)."""

    def __init__(self, device: "RemoteDevice") -> None:
        super().__init__("org.bluez.Device1")
        self.device = device

    @dbus_method()
    async def Connect(self) -> None:  # noqa: N802
        await self.device.connect()

    @dbus_method()
    async def Disconnect(self) -> None:  # noqa: N802
        await self.device.disconnect()

    @dbus_property(access=READ)
    def Address(self) -> DBusStr:  # noqa: N802
        return str(self.device.address_text)

    @dbus_property(access=READ)
    def AddressType(self) -> DBusStr:  # noqa: N802
        return "random" if self.device.address.is_random else "public"

    @dbus_property(access=READ)
    def Alias(self) -> DBusStr:  # noqa: N802
        return str(self.device.props.get("Name") or self.device.address_text.replace(":", "-"))

    @dbus_property(access=READ)
    def Adapter(self) -> DBusObjectPath:  # noqa: N802
        return self.device.stack.path

    @dbus_property(access=READ)
    def Paired(self) -> DBusBool:  # noqa: N802
        return False

    @dbus_property(access=READ)
    def Bonded(self) -> DBusBool:  # noqa: N802
        return False

    @dbus_property(access=READ)
    def Trusted(self) -> DBusBool:  # noqa: N802
        return False

    @dbus_property(access=READ)
    def Blocked(self) -> DBusBool:  # noqa: N802
        return False

    @dbus_property(access=READ)
    def LegacyPairing(self) -> DBusBool:  # noqa: N802
        return False

    @dbus_property(access=READ)
    def Connected(self) -> DBusBool:  # noqa: N802
        return bool(self.device.props["Connected"])

    @dbus_property(access=READ)
    def ServicesResolved(self) -> DBusBool:  # noqa: N802
        return bool(self.device.props["ServicesResolved"])

    @dbus_property(access=READ)
    def RSSI(self) -> DBusInt16:  # noqa: N802
        return int(self.device.props["RSSI"])

    @dbus_property(access=READ)
    def UUIDs(self) -> DBusStrs:  # noqa: N802
        return list(self.device.props["UUIDs"])

    @dbus_property(access=READ)
    def ServiceData(self) -> DBusDict:  # noqa: N802
        return dict(self.device.props["ServiceData"])

    @dbus_property(access=READ)
    def ManufacturerData(self) -> DBusManufacturerData:  # noqa: N802
        return dict(self.device.props["ManufacturerData"])


class GattService1(ServiceInterface):
    """``…/dev_…/serviceXXXX``: a remote primary service (doc/org.bluez.GattService.rst)."""

    def __init__(self, uuid: str, device_path: str, handle: int) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid, self.device_path, self.handle = uuid, device_path, handle

    @dbus_property(access=READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return self.uuid

    @dbus_property(access=READ)
    def Primary(self) -> DBusBool:  # noqa: N802
        return True

    @dbus_property(access=READ)
    def Device(self) -> DBusObjectPath:  # noqa: N802
        return self.device_path

    @dbus_property(access=READ)
    def Includes(self) -> DBusObjectPaths:  # noqa: N802
        return []

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

    @dbus_property(access=READ)
    def Value(self) -> DBusBytes:  # noqa: N802
        return b""

    @dbus_property(access=READ)
    def Handle(self) -> DBusUInt16:  # noqa: N802
        return int(self.proxy.handle)


class GattManager1(ServiceInterface):
    """``/org/bluez/hciN`` (doc/org.bluez.GattManager.rst). Registering needs the
    caller (BlueZ calls the application back): the stand-in's message handler
    serves both calls; the declarations are here for introspection."""

    def __init__(self) -> None:
        super().__init__("org.bluez.GattManager1")

    @dbus_method()
    def RegisterApplication(self, application: DBusObjectPath, options: DBusDict) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")

    @dbus_method()
    def UnregisterApplication(self, application: DBusObjectPath) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")


class LEAdvertisingManager1(ServiceInterface):
    """``/org/bluez/hciN`` (doc/org.bluez.LEAdvertisingManager.rst); the calls
    are served like :class:`GattManager1`'s. ``active()`` counts the adapter's
    registered advertisements (one advertising set: an emulated controller
    advertises legacy PDUs only)."""

    def __init__(self, active: Callable[[], int]) -> None:
        super().__init__("org.bluez.LEAdvertisingManager1")
        self.active = active

    @dbus_method()
    def RegisterAdvertisement(self, advertisement: DBusObjectPath, options: DBusDict) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")

    @dbus_method()
    def UnregisterAdvertisement(self, service: DBusObjectPath) -> None:  # noqa: N802
        raise error("Failed", "served by the message handler")

    @dbus_property(access=READ)
    def ActiveInstances(self) -> DBusByte:  # noqa: N802
        return self.active()

    @dbus_property(access=READ)
    def SupportedInstances(self) -> DBusByte:  # noqa: N802
        return 1 - self.active()

    @dbus_property(access=READ)
    def SupportedIncludes(self) -> DBusStrs:  # noqa: N802
        return ["tx-power", "appearance", "local-name"]
