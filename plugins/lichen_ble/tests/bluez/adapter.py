"""One adapter of the stand-in (``/org/bluez/hciN``): a Bumble host is its radio.

:class:`AdapterStack` is what BlueZ's adapter and device code does for a
D-Bus client in the central role: discovery sessions and their filters,
``Device1`` objects made from advertising reports, LE connections, the GATT
discovery that exports the peer's services, and disconnections. The
peripheral side is :mod:`.applications` (registered GATT applications) and
:mod:`.advertising` (registered advertisements).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from lichen_ble.bumble_radio import connect_le

from .gatt_objects import GattCharacteristic1, GattDescriptor1, GattService1
from .objects import Adapter1, Device1, error

__all__ = ["AdapterStack", "DiscoveryFilter", "RemoteDevice", "parse_ad"]

ATT_MTU = 517  # main.conf [GATT] ExchangeMTU's default: BlueZ asks for it on connecting
LE_CONNECTION_TIMEOUT = 20.0  # the kernel's LE connection attempt timeout
_BASE_UUID = "-0000-1000-8000-00805f9b34fb"


def _uuid16(raw: bytes) -> str:
    return f"{int.from_bytes(raw, 'little'):08x}{_BASE_UUID}"


def _uuid128(raw: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(raw[::-1])))


def parse_ad(data: bytes) -> dict[str, Any]:
    """The ``Device1`` properties an advertising report (or scan response) sets:
    ``UUIDs``, ``ServiceData``, ``ManufacturerData``, ``Name``, ``TxPower``, and
    ``Flags`` (the AD flags byte, for the discoverable check)."""
    found: dict[str, Any] = {"UUIDs": [], "ServiceData": {}, "ManufacturerData": {}}
    i = 0
    while i < len(data) and data[i] and i + 1 + data[i] <= len(data):
        kind, value = data[i + 1], bytes(data[i + 2 : i + 1 + data[i]])
        i += 1 + data[i]
        if kind == 0x01 and value:
            found["Flags"] = value[0]
        elif kind in (0x02, 0x03):
            found["UUIDs"] += [_uuid16(value[j : j + 2]) for j in range(0, len(value) - 1, 2)]
        elif kind in (0x04, 0x05):
            found["UUIDs"] += [_uuid16(value[j : j + 4]) for j in range(0, len(value) - 3, 4)]
        elif kind in (0x06, 0x07):
            found["UUIDs"] += [_uuid128(value[j : j + 16]) for j in range(0, len(value) - 15, 16)]
        elif kind in (0x08, 0x09):
            found["Name"] = value.decode("utf-8", "replace")
        elif kind == 0x0A and value:
            found["TxPower"] = int.from_bytes(value[:1], "little", signed=True)
        elif kind in (0x16, 0x20, 0x21):
            size = {0x16: 2, 0x20: 4, 0x21: 16}[kind]
            if len(value) >= size:
                key = _uuid128(value[:size]) if size == 16 else _uuid16(value[:size])
                found["ServiceData"][key] = value[size:]
        elif kind == 0xFF and len(value) >= 2:
            found["ManufacturerData"][int.from_bytes(value[:2], "little")] = value[2:]
    return found


@dataclass
class DiscoveryFilter:
    """One client's SetDiscoveryFilter (doc/org.bluez.Adapter.rst)."""

    uuids: set[str] = field(default_factory=set)
    rssi: int | None = None
    duplicate_data: bool = False  # "DuplicateData (Default false)"
    set: bool = False  # a filter was set: devices appear whatever their flags

    @classmethod
    def parse(cls, properties: dict[str, Variant]) -> DiscoveryFilter:
        known = {
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
            "AutoConnect",
        }
        if unknown := set(properties) - known:
            raise error("InvalidArguments", f"Invalid arguments in method call: {unknown}")
        value = {k: v.value for k, v in properties.items()}
        return cls(
            uuids={str(u).lower() for u in value.get("UUIDs", [])},
            rssi=value.get("RSSI"),
            duplicate_data=bool(value.get("DuplicateData", False)),
            set=bool(properties),
        )

    def matches(self, props: dict[str, Any], rssi: int) -> bool:
        if self.uuids and not self.uuids & {u.lower() for u in props["UUIDs"]}:
            return False  # "When a remote device is found that advertises any UUID from UUIDs"
        if self.rssi is not None and rssi < self.rssi:
            return False
        return self.set or bool(props.get("Flags", 0) & 0x03)  # LE limited/general discoverable


class RemoteDevice:
    """A peer the adapter heard or was connected by: its ``Device1`` and, while
    connected as a central, its GATT objects."""

    def __init__(self, stack: AdapterStack, address: Any) -> None:
        self.stack, self.address = stack, address
        self.address_text = address.to_string(False)
        self.path = f"{stack.path}/dev_{self.address_text.replace(':', '_')}"
        self.props: dict[str, Any] = {
            "Connected": False,
            "ServicesResolved": False,
            "RSSI": -127,
            "UUIDs": [],
            "ServiceData": {},
            "ManufacturerData": {},
        }
        self.connection: Any = None
        self.gatt: list[tuple[str, Any]] = []  # exported (path, interface), in order
        self.connecting: asyncio.Task[Any] | None = None
        self.interface = Device1(self)

    def set(self, **changed: Any) -> None:
        self.props.update(changed)
        self.stack.emit(self.interface, changed)

    def heard(self, props: dict[str, Any], rssi: int, duplicates: bool, emit: bool = True) -> None:
        """Merge an advertising report (BlueZ keeps the union of the advertising
        data and scan responses it heard) and signal what changed."""
        new = {
            "RSSI": rssi,
            "UUIDs": sorted(set(self.props["UUIDs"]) | set(props["UUIDs"])),
            "ServiceData": {
                **self.props["ServiceData"],
                **{k: Variant("ay", v) for k, v in props["ServiceData"].items()},
            },
            "ManufacturerData": {
                **self.props["ManufacturerData"],
                **{k: Variant("ay", v) for k, v in props["ManufacturerData"].items()},
            },
        }
        if "Name" in props:
            new["Name"] = props["Name"]
        changed = {k: v for k, v in new.items() if self.props.get(k) != v}
        if duplicates:  # "PropertiesChanged ... for ManufacturerData and ServiceData every time"
            changed.update({k: new[k] for k in ("ServiceData", "ManufacturerData") if props[k]})
        self.props.update(new)
        changed.pop("Name", None)  # Name is no Device1 property here (Alias is)
        if changed and emit:
            self.stack.emit(self.interface, changed)

    async def connect(self) -> None:
        """Device1.Connect on an LE device: connect, exchange the MTU, discover
        every service, export it, then ServicesResolved (BlueZ exports the GATT
        objects before it sets ServicesResolved)."""
        if self.connecting is not None:
            raise error("InProgress", "In Progress")
        if self.props["Connected"]:
            raise error("AlreadyConnected", "Already Connected")
        self.connecting = asyncio.get_running_loop().create_task(self._connect())
        try:
            await self.connecting
        except asyncio.CancelledError:
            raise error("Failed", "le-connection-abort-by-local") from None
        finally:
            self.connecting = None

    async def _connect(self) -> None:
        from bumble.device import Peer

        stack = self.stack
        async with stack.radio_lock:  # the controller does not scan while it initiates
            resume = stack.device.is_scanning
            if resume:
                await stack.device.stop_scanning()
            try:
                connection = await connect_le(stack.device, self.address, LE_CONNECTION_TIMEOUT)
            except Exception as exc:
                raise error("Failed", f"le-connection-abort-by-local: {exc}") from None
            finally:
                if resume and stack.discovering:
                    await stack.scan(True)
        self.connection = connection
        connection.on("disconnection", lambda reason: self.lost())
        self.set(Connected=True)
        try:
            peer = Peer(connection)
            await peer.request_mtu(ATT_MTU)
            for service in await peer.discover_services():
                self._export_service(service, await service.discover_characteristics())
                for characteristic in service.characteristics:
                    await characteristic.discover_descriptors()
                    self._export_descriptors(characteristic)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await connection.disconnect()
            raise error("Failed", f"GATT discovery failed: {exc}") from None
        self.set(ServicesResolved=True)

    def _export_service(self, service: Any, characteristics: list[Any]) -> None:
        service_path = f"{self.path}/service{service.handle:04x}"
        self._export(
            service_path, GattService1(str(service.uuid).lower(), self.path, service.handle)
        )
        for characteristic in characteristics:
            path = f"{service_path}/char{characteristic.handle:04x}"
            self._export(path, GattCharacteristic1(characteristic, service_path, self))

    def _export_descriptors(self, characteristic: Any) -> None:
        prefix = f"/char{characteristic.handle:04x}"
        [char_path] = [p for p, _ in self.gatt if p.endswith(prefix)]
        for descriptor in characteristic.descriptors:
            path = f"{char_path}/desc{descriptor.handle:04x}"
            self._export(path, GattDescriptor1(descriptor, char_path))

    def _export(self, path: str, interface: Any) -> None:
        self.stack.bus.export(path, interface)
        self.gatt.append((path, interface))

    async def disconnect(self) -> None:
        """Device1.Disconnect: cancels a connection attempt, or ends the link."""
        if self.connecting is not None:
            self.connecting.cancel()
            return
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect()

    def accepted(self, connection: Any) -> None:
        """A central connected to this adapter (the peripheral role)."""
        self.connection = connection
        connection.on("disconnection", lambda reason: self.lost())
        self.set(Connected=True)

    def lost(self) -> None:
        """The link is gone: ServicesResolved, then Connected, turn false, and the
        GATT objects go (InterfacesRemoved)."""
        self.connection = None
        if self.props["ServicesResolved"]:
            self.set(ServicesResolved=False)
        for path, _ in reversed(self.gatt):
            self.stack.bus.unexport(path)
        self.gatt.clear()
        if self.props["Connected"]:
            self.set(Connected=False)


class AdapterStack:
    """``/org/bluez/hci<index>`` on a Bumble ``Device`` (see the module)."""

    def __init__(self, bus: MessageBus, index: int, device: Any) -> None:
        self.bus, self.index, self.device = bus, index, device
        self.path = f"/org/bluez/hci{index}"
        self.name = f"lichen-test-hci{index}"
        self.address = device.random_address.to_string(False)
        self.powered = True
        self.discoverable = False
        self.sessions: dict[str, DiscoveryFilter] = {}  # discovery sessions, by client
        self.filters: dict[str, DiscoveryFilter] = {}  # SetDiscoveryFilter, by client
        self.devices: dict[str, RemoteDevice] = {}
        self.radio_lock = asyncio.Lock()
        self.interface = Adapter1(self)
        device.on("advertisement", self._advertisement)
        device.on("connection", self._connection)

    @property
    def discovering(self) -> bool:
        return bool(self.sessions)

    def export(self) -> None:
        self.bus.export(self.path, self.interface)

    def emit(self, interface: Any, changed: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the bus may be gone at exit
            interface.emit_properties_changed(changed)

    # ------------------------------------------------------------ discovery

    def set_discovery_filter(self, sender: str, properties: dict[str, Variant]) -> None:
        # "When this method is called with no filter parameter, filter is removed."
        self.filters[sender] = DiscoveryFilter.parse(properties)
        if sender in self.sessions:
            self.sessions[sender] = self.filters[sender]

    async def start_discovery(self, sender: str) -> None:
        if not self.powered:
            raise error("NotReady", "Resource Not Ready")
        if sender in self.sessions:  # "Each client can request a single ... session"
            raise error("InProgress", "Operation already in progress")
        self.sessions[sender] = self.filters.get(sender, DiscoveryFilter())
        if len(self.sessions) == 1:
            async with self.radio_lock:
                await self.scan(True)
            self.emit(self.interface, {"Discovering": True})

    async def stop_discovery(self, sender: str) -> None:
        if self.sessions.pop(sender, None) is None:
            raise error("Failed", "No discovery started")
        self.filters.pop(sender, None)  # the filter ends with the session
        if not self.sessions:
            async with self.radio_lock:
                await self.scan(False)
            self.emit(self.interface, {"Discovering": False})

    def client_gone(self, sender: str) -> None:
        """A client left the bus: its discovery session ends (BlueZ watches it)."""
        self.filters.pop(sender, None)
        if self.sessions.pop(sender, None) is not None and not self.sessions:
            asyncio.get_running_loop().create_task(self._stop_scanning())

    async def _stop_scanning(self) -> None:
        async with self.radio_lock:
            await self.scan(False)
        self.emit(self.interface, {"Discovering": False})

    async def scan(self, on: bool) -> None:
        if on and not self.device.is_scanning:
            await self.device.start_scanning(active=True, filter_duplicates=False)
        elif not on and self.device.is_scanning:
            await self.device.stop_scanning()

    def _advertisement(self, advertisement: Any) -> None:
        if not self.sessions:
            return
        props = parse_ad(bytes(advertisement.data_bytes))
        rssi = int(advertisement.rssi)
        if not any(f.matches(props, rssi) for f in self.sessions.values()):
            return
        duplicates = any(f.duplicate_data for f in self.sessions.values())
        known = self._path(advertisement.address) in self.devices
        device = self._device(advertisement.address, lambda d: d.heard(props, rssi, False, False))
        if known:
            device.heard(props, rssi, duplicates)

    def _path(self, address: Any) -> str:
        return f"{self.path}/dev_{address.to_string(False).replace(':', '_')}"

    def _device(self, address: Any, first: Any = None) -> RemoteDevice:
        """The device at ``address``; a new one gets ``first`` applied, then is
        exported (InterfacesAdded carries its properties)."""
        path = self._path(address)
        device = self.devices.get(path)
        if device is None:
            device = self.devices[path] = RemoteDevice(self, address)
            if first is not None:
                first(device)
            self.bus.export(path, device.interface)
        return device

    def _connection(self, connection: Any) -> None:
        from bumble.hci import Role

        if connection.role == Role.PERIPHERAL:
            self._device(connection.peer_address).accepted(connection)

    async def remove_device(self, path: str) -> None:
        device = self.devices.pop(path, None)
        if device is None:
            raise error("DoesNotExist", "Does Not Exist")
        await device.disconnect()
        device.lost()
        self.bus.unexport(path)
