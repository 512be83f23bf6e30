"""The Bumble back end: Lichen's GATT service in both roles on one Bumble host.

:class:`BumbleRadio` owns one Bumble ``Device`` on an HCI transport — a USB
or UART dongle (``usb:0``, ``serial:/dev/ttyACM0``), an emulated controller
(``tcp-client:127.0.0.1:PORT``, see :mod:`lichen_ble.controllers`), or an
in-process ``LocalLink`` a test registered (``local:NAME``, see
:func:`register_local_link`). As a peripheral it serves the service and
advertises; as a central it scans, reads info and dials. Each GATT
connection becomes a :class:`~lichen_ble.stream.GattStream` through a
:class:`BumbleBearer`; every protocol decision is the link core's.

Bumble is imported here and in :mod:`~lichen_ble.bumble_central` only:
``import lichen_ble`` stays cheap (Bumble costs about 20 MB of memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from agent.errors import TransportError

from .bumble_central import NOT_ESTABLISHED, Deadline, connect_le, set_up
from .link import Mode, Role
from .radio import RadioHooks, Sighted, Tasks, abort_streams
from .service import INFO_UUID, MAX_ROOM, RX_UUID, SCAN_RESPONSE, SERVICE_UUID, TX_UUID, Info
from .stream import GattStream

__all__ = ["BumbleBearer", "BumbleRadio", "connect_le", "random_address", "register_local_link"]

PERIPHERAL_GRACE = 2.0  # seconds a peripheral waits for the central to disconnect
SETTLE = 0.1  # seconds after a disconnection before the next connection to the device
_LOCAL_LINKS: dict[str, Any] = {}


def register_local_link(name: str, link: Any) -> None:
    """Make ``hci = "local:NAME"`` mean a fresh emulated controller on ``link``
    (a ``bumble.link.LocalLink``) in this process: tests and embedding programs."""
    _LOCAL_LINKS[name] = link


def random_address(node_key: bytes) -> str:
    """A static random device address derived from the node key (the two top bits
    set, as the Core specification asks), so a node keeps its address."""
    raw = bytearray(hashlib.blake2b(node_key, digest_size=6, person=b"lichen-ble-addr").digest())
    raw[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in raw)


class BumbleBearer:
    """One GATT connection on Bumble, for a :class:`GattStream`."""

    def __init__(self, radio: BumbleRadio, connection: Any, rx: Any = None) -> None:
        self.radio, self.connection, self.rx = radio, connection, rx
        self.peer = f"ble://{connection.peer_address.to_string(False)}"
        self.gone = asyncio.Event()
        connection.on("disconnection", lambda _reason: self.gone.set())

    async def write(self, value: bytes) -> None:
        try:
            if self.rx is not None:  # central: write without response to rx
                await self.rx.write_value(value, with_response=False)
            else:  # peripheral: a notification on tx
                await self.radio.device.notify_subscriber(self.connection, self.radio.tx, value)
        except Exception as exc:
            raise TransportError(f"{self.peer}: GATT write failed: {exc}") from exc

    async def disconnect(self) -> None:
        """End the connection. The peripheral leaves it to the central for a moment
        (both ending it at once confuses controllers), then ends it itself."""
        if self.rx is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PERIPHERAL_GRACE):
                    await self.gone.wait()
        if not self.gone.is_set():
            with contextlib.suppress(Exception):
                await self.connection.disconnect()


class BumbleRadio:
    """A Bumble host serving and dialling Lichen's GATT service (see the module),
    calling back through ``hooks`` (``on_change`` also when a connection stops
    legacy advertising)."""

    max_incoming = MAX_ROOM  # each connection's notifications go to it alone

    def __init__(self, hci: str, node_key: bytes, hooks: RadioHooks) -> None:
        self.hci, self.node_key, self.hooks = hci, node_key, hooks
        self.address = random_address(node_key)
        self.device: Any = None
        self.tx: Any = None
        self._transport: Any = None
        self._streams: dict[Any, GattStream] = {}  # peripheral role, by connection
        self._opening = Tasks()
        self._advertising_data: bytes | None = None
        self._dial_lock = asyncio.Lock()
        self._dialled: set[str] = set()  # device addresses with a link we dialled

    @property
    def incoming(self) -> int:
        """Connections in the peripheral role now."""
        return len(self._streams)

    async def start(self) -> None:
        from bumble.core import UUID
        from bumble.device import Device
        from bumble.gatt import Characteristic, CharacteristicValue, Service
        from bumble.hci import Address

        name = "lichen"
        address = Address(self.address)
        if self.hci.startswith("local:"):
            device = self._local_device(name, address)
        else:
            from bumble.transport import open_transport

            try:
                self._transport = await open_transport(self.hci)
            except Exception as exc:
                raise TransportError(f"cannot open the HCI transport {self.hci!r}: {exc}") from exc
            device = Device.with_hci(name, address, self._transport.source, self._transport.sink)
        rx: Characteristic[bytes] = Characteristic(
            UUID(str(RX_UUID)),
            Characteristic.WRITE_WITHOUT_RESPONSE | Characteristic.WRITE,
            Characteristic.WRITEABLE,
            CharacteristicValue[bytes](write=self._rx_written),
        )
        self.tx = Characteristic(
            UUID(str(TX_UUID)), Characteristic.NOTIFY, Characteristic.READABLE, b""
        )
        info: Characteristic[bytes] = Characteristic(
            UUID(str(INFO_UUID)),
            Characteristic.READ,
            Characteristic.READABLE,
            CharacteristicValue[bytes](read=lambda _connection: self.hooks.info()),
        )
        device.add_service(Service(UUID(str(SERVICE_UUID)), [rx, self.tx, info]))
        device.on("connection", self._on_connection)
        if self.hooks.on_advert is not None:
            device.on("advertisement", self._on_advertisement)
        self.device = device
        try:
            await device.power_on()
        except Exception as exc:
            await self.close()
            raise TransportError(f"the Bluetooth controller at {self.hci!r} failed: {exc}") from exc

    def _local_device(self, name: str, address: Any) -> Any:
        from .controllers import local_device

        link = _LOCAL_LINKS.get(self.hci.removeprefix("local:"))
        if link is None:
            raise TransportError(f"no in-process link is registered as {self.hci!r}")
        return local_device(name, address, link)

    async def close(self) -> None:
        self._opening.cancel()
        await abort_streams(self._streams.values())
        if self.device is not None:
            with contextlib.suppress(Exception):
                for connection in list(self.device.connections.values()):
                    await connection.disconnect()
            with contextlib.suppress(Exception):
                await self.device.power_off()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                await self._transport.close()
            self._transport = None

    # ---------------------------------------------------------- peripheral

    async def advertise(self, data: bytes | None) -> None:
        """Advertise ``data`` (None: stop). Restarts only when it changed or stopped."""
        device = self.device
        if device is None:
            return
        if data is None:
            if device.is_advertising:
                await device.stop_advertising()
            self._advertising_data = None
            return
        if data == self._advertising_data and device.is_advertising:
            return
        if device.is_advertising:
            await device.stop_advertising()
        self._advertising_data = data
        await device.start_advertising(
            advertising_data=data,
            scan_response_data=SCAN_RESPONSE,
            advertising_interval_min=100,
            advertising_interval_max=100,
        )

    def _on_connection(self, connection: Any) -> None:
        from bumble.hci import Role as HciRole

        if connection.role != HciRole.PERIPHERAL:
            return  # our own dials are handled by dial()
        bearer = BumbleBearer(self, connection)
        stream = GattStream(
            bearer,
            Role.PERIPHERAL,
            mtu=connection.att_mtu,
            modes=self.hooks.modes,
            **self.hooks.link_options,
        )
        self._streams[connection] = stream
        connection.on("connection_att_mtu_update", lambda: stream.mtu_changed(connection.att_mtu))
        connection.on("disconnection", lambda reason: self._lost(connection, reason))
        self._opening.spawn(self.hooks.open_incoming(stream))
        self.hooks.on_change()

    def _rx_written(self, connection: Any, value: bytes) -> None:
        stream = self._streams.get(connection)
        if stream is not None:
            stream.value_received(bytes(value))

    def _lost(self, connection: Any, reason: int) -> None:
        stream = self._streams.pop(connection, None)
        if stream is not None:
            stream.disconnected(f"reason 0x{reason:02x}")
            self.hooks.on_change()

    # ------------------------------------------------------------- central

    async def scan(self, on: bool) -> None:
        if self.device is None:
            return
        if on and not self.device.is_scanning:
            await self.device.start_scanning(active=True, filter_duplicates=False)
        elif not on and self.device.is_scanning:
            await self.device.stop_scanning()

    def _on_advertisement(self, advertisement: Any) -> None:
        if self.hooks.on_advert is not None:
            address = advertisement.address.to_string(False)
            self.hooks.on_advert(
                Sighted(address, int(advertisement.rssi), bytes(advertisement.data_bytes))
            )

    async def _connect(self, address: str, deadline: Deadline) -> tuple[Any, Any]:
        """Connect to ``address`` and discover its Lichen service by ``deadline``.
        A connection that failed to be established (0x3E: the device missed the
        CONNECT_IND, as a radio sometimes does) is made again while time is
        left; one that ends otherwise during set-up fails at once."""
        from bumble.hci import Address

        try:
            while True:
                async with deadline.step("connecting"):
                    await self._drop_stale(Address(address))
                    connection = await connect_le(
                        self.device, Address(address), max(0.1, deadline.left())
                    )
                async with deadline.step("exchanging the MTU and discovering the service"):
                    ended, service = await set_up(self.device, connection, address)
                if ended is None:
                    return connection, service
                if ended != NOT_ESTABLISHED:
                    raise TransportError(
                        f"the connection to ble://{address} ended during set-up "
                        f"(reason 0x{ended:02x})"
                    )
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"cannot connect to ble://{address}: {exc}") from exc

    def _connected_to(self, address: str) -> bool:
        from bumble.hci import Address

        return self.device.find_connection_by_bd_addr(Address(address)) is not None

    async def _drop_stale(self, address: Any) -> None:
        """Wait (2 s at most) for a connection to ``address`` whose disconnection is
        under way: the controller refuses a second one to the same device."""
        stale = self.device.find_connection_by_bd_addr(address)
        if stale is None:
            return
        if stale in self._streams:
            raise TransportError(f"ble://{address.to_string(False)} is connected to us already")
        gone = asyncio.Event()
        stale.once("disconnection", lambda _reason: gone.set())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await gone.wait()

    async def read_info(self, address: str, timeout: float) -> Info:
        """Connect, read info, disconnect, all within ``timeout`` seconds (not while
        a link to ``address`` is being dialled or open: one connection per device)."""
        deadline = Deadline(f"ble://{address}", timeout, "reading the info of")
        async with self._radio_free(deadline):
            if address in self._dialled or self._connected_to(address):
                raise TransportError(f"ble://{address} is connected already")
            connection, service = await self._connect(address, deadline)
            try:
                [info] = service.get_characteristics_by_uuid(str(INFO_UUID))
                async with deadline.step("reading info"):
                    return Info.decode(bytes(await info.read_value()))
            except TransportError:
                raise
            except Exception as exc:
                raise TransportError(f"reading info from ble://{address} failed: {exc}") from exc
            finally:
                await self._hang_up(connection)

    @contextlib.asynccontextmanager
    async def _radio_free(self, deadline: Deadline) -> AsyncIterator[None]:
        """Hold the radio's one connection attempt at a time, waited for within
        ``deadline`` (a dial and an info read of the same device race)."""
        async with deadline.step("waiting for another connection attempt"):
            await self._dial_lock.acquire()
        try:
            yield
        finally:
            self._dial_lock.release()

    async def _hang_up(self, connection: Any) -> None:
        """Disconnect and wait until the controller has let go (2 s at most), so the
        next connection to the same device is not refused as a duplicate."""
        gone = asyncio.Event()
        connection.once("disconnection", lambda _reason: gone.set())
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                if self.device.lookup_connection(connection.handle) is connection:
                    await connection.disconnect()  # (not when it ended: that never returns)
                    await gone.wait()
        await asyncio.sleep(SETTLE)

    async def dial(
        self, address: str, timeout: float, expect: bytes | None = None, mode: Mode = Mode.SYNC
    ) -> GattStream:
        """Connect to ``address``, check its node key is ``expect`` (when given),
        subscribe, and open a link in ``mode``: all within ``timeout`` seconds,
        or a :class:`TransportError` names the step that was under way. A dial
        that fails (or is cancelled) leaves no connection behind."""
        deadline = Deadline(f"ble://{address}", timeout)
        async with self._radio_free(deadline):
            connection, service = await self._connect(address, deadline)
            self._dialled.add(address)
        connection.once("disconnection", lambda _reason: self._dialled.discard(address))
        try:
            return await self._open(connection, service, deadline, expect, mode)
        except BaseException as exc:
            await self._hang_up(connection)
            if isinstance(exc, Exception) and not isinstance(exc, TransportError):
                raise TransportError(f"opening a link to ble://{address} failed: {exc}") from exc
            raise

    async def _open(
        self, connection: Any, service: Any, deadline: Deadline, expect: bytes | None, mode: Mode
    ) -> GattStream:
        """The rest of :meth:`dial` on ``connection``, its Lichen ``service`` found."""
        peer = deadline.peer
        characteristics = {
            uuid: service.get_characteristics_by_uuid(str(uuid))
            for uuid in (RX_UUID, TX_UUID, INFO_UUID)
        }
        if not all(characteristics.values()):
            raise TransportError(f"{peer}: the Lichen service lacks a characteristic")
        if expect is not None:
            async with deadline.step("reading info"):
                info = Info.decode(bytes(await characteristics[INFO_UUID][0].read_value()))
            if info.node != expect:
                raise TransportError(f"{peer} is another node than the one dialled")
            if info.room == 0:
                raise TransportError(f"{peer} takes no more connections")
        bearer = BumbleBearer(self, connection, characteristics[RX_UUID][0])
        stream = GattStream(
            bearer, Role.CENTRAL, mtu=connection.att_mtu, mode=mode, **self.hooks.link_options
        )
        connection.on("disconnection", lambda reason: stream.disconnected(f"reason 0x{reason:02x}"))
        async with deadline.step("subscribing"):
            await characteristics[TX_UUID][0].subscribe(
                lambda value: stream.value_received(bytes(value))
            )
        try:
            async with deadline.step("opening the link"):
                await stream.open(timeout=deadline.left())
        except TransportError as exc:
            if deadline.left() == 0.0:  # the link's own timer, the dial's deadline
                raise deadline.timed_out() from exc
            raise
        return stream
