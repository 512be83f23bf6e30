"""The peripheral role on BlueZ, through bluezero: Lichen's GATT application and
advertisement registered with ``bluetoothd`` over D-Bus.

bluezero (on dbus-python) runs in a GLib main loop, so :class:`BluezeroPeripheral`
runs that loop in a thread of its own and does every bluezero and dbus-python
call there (:meth:`~.glib_thread.GLibThread.call`); what BlueZ reports — a central connected or
left, a value written to rx, a read of info — comes back to the asyncio loop
with ``call_soon_threadsafe``. Used pieces: bluezero's ``localGATT``
application, service and characteristics, its ``GattManager``, and its
``Advertisement`` (extended by two properties bluezero does not expose:
``Discoverable`` and, with ``bluetoothd --experimental``,
``ScanResponseServiceUUIDs``).

**One central at a time.** BlueZ sends a characteristic's new ``Value`` to
*every* central that enabled its notifications (gatt-database.c), and the link
segments carry no connection id, so two links on one tx would see each
other's segments. A second central is disconnected at once, and the
advertisement says room 0 while a link is up (``max_incoming`` is 1).

**Not bluezero's Peripheral or Adapter classes**: their signal handlers call
``GetManagedObjects`` for every ``Device1`` property change — every
advertisement a scanning node hears — and swallow registration errors; the
GLib thread watches ``Device1.Connected`` itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from agent.errors import TransportError

from .glib_thread import GLibThread, resolve
from .link import Role
from .radio import RadioHooks, Tasks, abort_streams
from .service import INFO_UUID, RX_UUID, SERVICE_UUID, TX_UUID
from .stream import GattStream

__all__ = ["BluezeroPeripheral", "adapter_of"]

_DEVICE = "org.bluez.Device1"
_CALL_TIMEOUT = 10.0
_in_use = threading.Lock()  # bluezero's object paths are fixed: one application per process


def adapter_of(device_path: str) -> str:
    """``/org/bluez/hci0/dev_AA_…`` → ``/org/bluez/hci0``."""
    return device_path.rsplit("/", 1)[0]


def device_address(device_path: str) -> str:
    return device_path.rsplit("/dev_", 1)[-1].replace("_", ":")


class BluezeroBearer:
    """One central connected to this node, for its :class:`GattStream`."""

    def __init__(self, peripheral: BluezeroPeripheral, device_path: str) -> None:
        self.peripheral, self.device_path = peripheral, device_path
        self.peer = f"ble://{device_address(device_path)}"

    async def write(self, value: bytes) -> None:
        try:
            await self.peripheral.glib.call(self.peripheral.tx.set_value, list(value))
        except Exception as exc:
            raise TransportError(f"{self.peer}: notifying failed: {exc}") from exc

    async def disconnect(self) -> None:
        await self.peripheral.disconnect(self.device_path)


class BluezeroPeripheral:
    """Lichen's GATT service and advertisement on the BlueZ adapter ``adapter``
    (``hci0``), through bluezero (see the module), calling back through
    ``hooks``."""

    max_incoming = 1

    def __init__(self, adapter: str, hooks: RadioHooks) -> None:
        self.adapter_path = f"/org/bluez/{adapter}"
        self.hooks = hooks
        self.glib: Any = None
        self.app: Any = None
        self.tx: Any = None
        self.advert: Any = None
        self.manager: Any = None
        self._objects: list[Any] = []
        self._advertising = False
        self._advertise_lock = asyncio.Lock()  # one registration at a time
        self._streams: dict[str, GattStream] = {}  # by device path
        self._tasks = Tasks()
        self._receiver: Any = None
        self._owned = False

    @property
    def incoming(self) -> int:
        """Links opened and not ended. A central that is only connected (reading
        info, or about to open) is not counted: the room in the info it reads
        is the room it finds."""
        return sum(1 for stream in self._streams.values() if stream.link.opened)

    # -------------------------------------------------------------- running

    async def start(self) -> None:
        if not _in_use.acquire(blocking=False):
            raise TransportError(
                "only one bluez peripheral runs in a process (bluezero's object paths are fixed)"
            )
        self._owned = True
        loop = asyncio.get_running_loop()
        self.glib = GLibThread(loop)
        self.glib.start()
        try:
            await asyncio.wait_for(self.glib.call(self._build, loop), _CALL_TIMEOUT)
            registered: asyncio.Future[None] = loop.create_future()
            await self.glib.call(self._register, registered)
            await asyncio.wait_for(registered, _CALL_TIMEOUT)
        except TimeoutError:
            await self.close()
            raise TransportError(f"BlueZ did not answer on {self.adapter_path}") from None
        except TransportError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise TransportError(f"the BlueZ adapter {self.adapter_path} failed: {exc}") from exc

    def _build(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the GLib thread: find the adapter, make the application and the
        advertisement, watch connections."""
        import dbus
        from bluezero import GATT, dbus_tools, localGATT

        objects = dbus_tools.get_managed_objects()
        adapter = objects.get(dbus.ObjectPath(self.adapter_path), {}).get("org.bluez.Adapter1")
        if adapter is None:
            found = sorted(str(p) for p, i in objects.items() if "org.bluez.Adapter1" in i)
            raise TransportError(
                f"no Bluetooth adapter {self.adapter_path.rsplit('/', 1)[-1]!r} in BlueZ "
                f"(it has: {', '.join(p.rsplit('/', 1)[-1] for p in found) or 'none'})"
            )
        bus = dbus.SystemBus()
        if not adapter.get("Powered"):
            props = dbus.Interface(
                bus.get_object("org.bluez", self.adapter_path), dbus.PROPERTIES_IFACE
            )
            props.Set("org.bluez.Adapter1", "Powered", dbus.Boolean(True))

        def call_in_loop(fn: Callable[..., Any], *args: Any) -> None:
            loop.call_soon_threadsafe(fn, *args)

        def read_info(options: dict[str, Any]) -> list[int]:
            fresh: concurrent.futures.Future[bytes] = concurrent.futures.Future()
            loop.call_soon_threadsafe(lambda: fresh.set_result(self.hooks.info()))
            return list(fresh.result(timeout=2.0))

        def written(value: list[int], options: dict[str, Any]) -> None:
            call_in_loop(
                self._written,
                str(options.get("device", "")),
                bytes(value),
                int(options.get("mtu", 23)),
            )

        self.app = localGATT.Application()
        service = localGATT.Service(1, str(SERVICE_UUID), True)
        rx = localGATT.Characteristic(
            1, 1, str(RX_UUID), [], False, ["write-without-response"], write_callback=written
        )
        self.tx = localGATT.Characteristic(1, 2, str(TX_UUID), [], False, ["notify"])
        info = localGATT.Characteristic(
            1, 3, str(INFO_UUID), [], False, ["read"], read_callback=read_info
        )
        for obj in (service, rx, self.tx, info):
            self.app.add_managed_object(obj)
        self.advert = _advertisement_class()(1, "peripheral")
        self._objects = [self.app, service, rx, self.tx, info, self.advert]
        self.manager = GATT.GattManager(adapter["Address"])

        def properties_changed(interface: str, changed: Any, _invalid: Any, path: str) -> None:
            if "Connected" in changed and adapter_of(path) == self.adapter_path:
                call_in_loop(self._connected if changed["Connected"] else self._left, str(path))

        self._receiver = bus.add_signal_receiver(
            properties_changed,
            signal_name="PropertiesChanged",
            dbus_interface=dbus.PROPERTIES_IFACE,
            arg0=_DEVICE,
            path_keyword="path",
        )

    def _register(self, registered: asyncio.Future[None]) -> None:
        loop = registered.get_loop()

        def ok() -> None:
            loop.call_soon_threadsafe(resolve, registered)

        def failed(error: Any) -> None:
            exc = TransportError(f"BlueZ refused the GATT application: {error}")
            loop.call_soon_threadsafe(resolve, registered, exc)

        self.manager.manager_methods.RegisterApplication(
            self.app.get_path(), {}, reply_handler=ok, error_handler=failed
        )

    async def close(self) -> None:
        self._tasks.cancel()
        await abort_streams(self._streams.values())
        if self.glib is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.glib.call(self._teardown), _CALL_TIMEOUT)
            self.glib.stop()
            self.glib = None
        if self._owned:
            self._owned = False
            _in_use.release()

    def _teardown(self) -> None:
        """In the GLib thread: unregister, and free bluezero's object paths."""
        if self._advertising:
            with contextlib.suppress(Exception):
                self._advertising_manager().UnregisterAdvertisement(self.advert.get_path())
            self._advertising = False
        if self.manager is not None:
            with contextlib.suppress(Exception):
                self.manager.manager_methods.UnregisterApplication(self.app.get_path())
        if self._receiver is not None:
            self._receiver.remove()
        for obj in self._objects:
            with contextlib.suppress(Exception):
                obj.remove_from_connection()

    # ---------------------------------------------------------- advertising

    def _advertising_manager(self) -> Any:
        import dbus

        bus = dbus.SystemBus()
        return dbus.Interface(
            bus.get_object("org.bluez", self.adapter_path), "org.bluez.LEAdvertisingManager1"
        )

    async def advertise(self, service_data: bytes | None) -> None:
        """Advertise ``service_data`` under the service UUID (None: stop). BlueZ
        reads an advertisement when it is registered, and bluezero's does not
        signal changes, so a change registers it again."""
        async with self._advertise_lock:  # BlueZ: AlreadyExists while one is registering
            if self.glib is None:
                return
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self.glib.call(self._readvertise, service_data, done)
            await asyncio.wait_for(done, _CALL_TIMEOUT)

    def _readvertise(self, service_data: bytes | None, done: asyncio.Future[None]) -> None:
        loop = done.get_loop()
        manager = self._advertising_manager()
        if self._advertising:
            with contextlib.suppress(Exception):
                manager.UnregisterAdvertisement(self.advert.get_path())
            self._advertising = False
        if service_data is None:
            loop.call_soon_threadsafe(resolve, done)
            return
        self.advert.service_data = {str(SERVICE_UUID): list(service_data)}

        def ok() -> None:
            self._advertising = True
            loop.call_soon_threadsafe(resolve, done)

        def failed(error: Any) -> None:
            exc = TransportError(f"BlueZ refused the advertisement: {error}")
            loop.call_soon_threadsafe(resolve, done, exc)

        manager.RegisterAdvertisement(
            self.advert.get_path(), {}, reply_handler=ok, error_handler=failed
        )

    # ------------------------------------------------------------ centrals

    def _connected(self, device_path: str) -> None:
        if device_path in self._streams:
            return
        if len(self._streams) >= self.max_incoming:
            # a second central would share tx's notifications: refuse it
            self.hooks.log.debug("BLE: %s refused, a link is up", device_path)
            self._tasks.spawn(self.disconnect(device_path))
            return
        bearer = BluezeroBearer(self, device_path)
        options = self.hooks.link_options
        stream = GattStream(bearer, Role.PERIPHERAL, mtu=23, modes=self.hooks.modes, **options)
        self._streams[device_path] = stream
        self._tasks.spawn(self._open(stream))

    async def _open(self, stream: GattStream) -> None:
        if await self.hooks.open_incoming(stream):
            self.hooks.on_change()  # no room left: the advertisement stops

    def _left(self, device_path: str) -> None:
        stream = self._streams.pop(device_path, None)
        if stream is not None:
            stream.disconnected("the central disconnected")
            self.hooks.on_change()

    def _written(self, device_path: str, value: bytes, mtu: int) -> None:
        stream = self._streams.get(device_path)
        if stream is None:
            return  # not the central of the link (refused, or gone)
        stream.mtu_changed(mtu)  # BlueZ gives the exchanged MTU with every write
        stream.value_received(value)

    async def disconnect(self, device_path: str) -> None:
        if self.glib is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.glib.call(self._disconnect, device_path, done)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, _CALL_TIMEOUT)

    def _disconnect(self, device_path: str, done: asyncio.Future[None]) -> None:
        import dbus

        loop = done.get_loop()

        def settle(*_args: Any) -> None:
            loop.call_soon_threadsafe(resolve, done)

        device = dbus.Interface(dbus.SystemBus().get_object("org.bluez", device_path), _DEVICE)
        device.Disconnect(reply_handler=settle, error_handler=settle)


def _advertisement_class() -> type:
    """bluezero's Advertisement with ``Discoverable`` (general discoverable flags,
    without making the adapter discoverable over BR/EDR too) and the service
    UUID in the scan response for phones (``ScanResponseServiceUUIDs``: only
    ``bluetoothd --experimental`` honours it; others ignore it)."""
    import dbus
    import dbus.service
    from bluezero import advertisement, constants

    class LichenAdvertisement(advertisement.Advertisement):  # type: ignore[misc]
        @dbus.service.method(  # type: ignore[untyped-decorator]
            constants.DBUS_PROP_IFACE, in_signature="s", out_signature="a{sv}"
        )
        def GetAll(self, interface_name: str) -> Any:  # noqa: N802
            response = super().GetAll(interface_name)
            response["Discoverable"] = dbus.Boolean(True)
            response["ScanResponseServiceUUIDs"] = dbus.Array([str(SERVICE_UUID)], signature="s")
            return response

    return LichenAdvertisement
