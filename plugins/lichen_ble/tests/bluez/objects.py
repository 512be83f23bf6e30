"""The stand-in's D-Bus objects at an adapter's and its devices' paths:
``org.bluez.Adapter1``, ``Device1``, and the peripheral role's
``GattManager1`` and ``LEAdvertisingManager1``, as BlueZ's
``doc/org.bluez.*.rst`` describe them; a device's GATT objects are in
:mod:`.gatt_objects`.

Each object only translates between D-Bus and its :class:`~.adapter.AdapterStack`
(the Bumble host that is the adapter's radio); the behaviour is there, or in
:mod:`.server` for the calls that need their caller. BlueZ's error names are
kept (``org.bluez.Error.*``), so a client sees what it would see on a board.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus
signatures from the annotations at run time.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusByte,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

if TYPE_CHECKING:
    from .adapter import AdapterStack, RemoteDevice

__all__ = [
    "FAILED",
    "READ",
    "Adapter1",
    "DBusStrs",
    "Device1",
    "GattManager1",
    "LEAdvertisingManager1",
    "error",
    "fixed",
]

DBusStrs = Annotated[list[str], DBusSignature("as")]
DBusManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
READ = PropertyAccess.READ

FAILED = "org.bluez.Error.Failed"


def error(name: str, text: str) -> DBusError:
    """A BlueZ error reply: ``org.bluez.Error.<name>``."""
    return DBusError(f"org.bluez.Error.{name}", text)


def fixed(name: str, signature: str, value: Any) -> Any:
    """A read-only property ``name`` that is always ``value`` here (D-Bus type
    ``signature``): what BlueZ reports on a board that pairs with nobody."""

    def get(self: ServiceInterface) -> Any:
        return value

    get.__name__ = get.__qualname__ = name  # dbus-fast looks the getter up by its name
    get.__annotations__["return"] = signature
    return dbus_property(access=READ)(get)


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

    AddressType = fixed("AddressType", "s", "random")

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

    Pairable = fixed("Pairable", "b", False)

    @dbus_property(access=READ)
    def Discovering(self) -> DBusBool:  # noqa: N802
        return self.stack.discovering

    Roles = fixed("Roles", "as", ["central", "peripheral"])
    UUIDs = fixed("UUIDs", "as", [])


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

    Paired = fixed("Paired", "b", False)
    Bonded = fixed("Bonded", "b", False)
    Trusted = fixed("Trusted", "b", False)
    Blocked = fixed("Blocked", "b", False)
    LegacyPairing = fixed("LegacyPairing", "b", False)

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

    SupportedIncludes = fixed("SupportedIncludes", "as", ["tx-power", "appearance", "local-name"])
