"""The central role on BlueZ, through bleak: scan, read info, dial.

bleak is asyncio-native (dbus-fast underneath), so this runs on the agent's
loop. :class:`BleakCentral` scans with BlueZ's ``DuplicateData`` filter on
(by default BlueZ signals an advertisement again only when its data change,
and a node must keep hearing the nodes in range to dial them), keeps the
Lichen service data it hears, and connects through ``BleakClient``:
subscribe to tx, write rx without response, read info. Each connection is a
:class:`~lichen_ble.stream.GattStream` over a :class:`BleakBearer`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from agent.errors import TransportError

from .link import Mode, Role
from .radio import RadioHooks, Sighted
from .service import INFO_UUID, RX_UUID, SERVICE_UUID, TX_UUID, Advert, AdvertError, Info
from .service import advertising_data as encode_advertising_data
from .stream import GattStream

__all__ = ["BleakBearer", "BleakCentral"]

_SERVICE = str(SERVICE_UUID)
_MAX_DEVICES = 256


class BleakBearer:
    """One connection made with ``BleakClient``."""

    def __init__(self, client: Any, address: str) -> None:
        self.client = client
        self.peer = f"ble://{address}"

    async def write(self, value: bytes) -> None:
        try:  # "command": BlueZ's write without response (GattCharacteristic1.WriteValue)
            await self.client.write_gatt_char(str(RX_UUID), value, response=False)
        except Exception as exc:
            raise TransportError(f"{self.peer}: GATT write failed: {exc}") from exc

    async def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.disconnect()


class BleakCentral:
    """Scanning and dialling on the BlueZ adapter ``adapter`` (``hci0``)."""

    def __init__(self, adapter: str, hooks: RadioHooks) -> None:
        self.adapter, self.hooks = adapter, hooks
        self._scanner: Any = None
        self._scanning = False
        self._devices: dict[str, Any] = {}  # address -> bleak BLEDevice heard
        self._dial_lock = asyncio.Lock()
        self._clients: set[Any] = set()

    async def start(self) -> None:
        from bleak import BleakScanner

        self._scanner = BleakScanner(
            self._detected,
            scanning_mode="active",
            bluez={"adapter": self.adapter, "filters": {"DuplicateData": True}},
        )

    async def close(self) -> None:
        await self.scan(False)
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def scan(self, on: bool) -> None:
        scanner = self._scanner
        if scanner is None:
            return
        try:
            if on and not self._scanning:
                await scanner.start()
                self._scanning = True
            elif not on and self._scanning:
                self._scanning = False
                await scanner.stop()
        except Exception as exc:
            raise TransportError(f"BlueZ scanning on {self.adapter} failed: {exc}") from exc

    def _detected(self, device: Any, advertisement: Any) -> None:
        value = advertisement.service_data.get(_SERVICE)
        if value is None or self.hooks.on_advert is None:
            return
        try:  # the advertisement as the transport parses it from any stack
            data = encode_advertising_data(Advert.decode(bytes(value)))
        except (AdvertError, ValueError):
            return
        if device.address not in self._devices and len(self._devices) >= _MAX_DEVICES:
            self._devices.pop(next(iter(self._devices)))
        self._devices[device.address] = device
        self.hooks.on_advert(Sighted(device.address, int(advertisement.rssi), data))

    async def _connect(self, address: str, timeout: float, on_lost: Callable[[], None]) -> Any:
        from bleak import BleakClient

        client = BleakClient(
            self._devices.get(address, address),
            lambda _client: on_lost(),
            timeout=timeout,
            bluez={"adapter": self.adapter},
        )
        try:
            async with asyncio.timeout(timeout):
                await client.connect()
        except TimeoutError:
            raise TransportError(f"connecting to ble://{address} timed out") from None
        except Exception as exc:
            raise TransportError(f"cannot connect to ble://{address}: {exc}") from exc
        if client.services.get_service(_SERVICE) is None:
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise TransportError(f"ble://{address} serves no Lichen service")
        self._clients.add(client)
        return client

    async def _read_info(self, client: Any, address: str) -> Info:
        try:
            return Info.decode(bytes(await client.read_gatt_char(str(INFO_UUID))))
        except (AdvertError, ValueError) as exc:
            raise TransportError(f"ble://{address}: a bad info value: {exc}") from exc
        except Exception as exc:
            raise TransportError(f"reading info from ble://{address} failed: {exc}") from exc

    async def _release(self, client: Any) -> None:
        self._clients.discard(client)
        with contextlib.suppress(Exception):
            await client.disconnect()

    async def read_info(self, address: str, timeout: float) -> Info:
        """Connect, read info, disconnect."""
        async with self._dial_lock:
            client = await self._connect(address, timeout, lambda: None)
            try:
                return await self._read_info(client, address)
            finally:
                await self._release(client)

    async def dial(
        self, address: str, timeout: float, expect: bytes | None = None, mode: Mode = Mode.SYNC
    ) -> GattStream:
        """Connect, check the node key is ``expect`` (when given), subscribe to tx,
        and open a link in ``mode``; the OPEN gets what is left of ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stream: GattStream | None = None

        def lost() -> None:
            self._clients.discard(client)
            if stream is not None:
                stream.disconnected("the peripheral disconnected")

        async with self._dial_lock:
            client = await self._connect(address, timeout, lost)
        try:
            if expect is not None:
                info = await self._read_info(client, address)
                if info.node != expect:
                    raise TransportError(f"ble://{address} is another node than the one dialled")
                if info.room == 0:
                    raise TransportError(f"ble://{address} takes no more connections")
            rx = client.services.get_characteristic(str(RX_UUID))
            if rx is None or client.services.get_characteristic(str(TX_UUID)) is None:
                raise TransportError(f"ble://{address}: the Lichen service lacks a characteristic")
            # bleak's size is the characteristic's MTU property less 3 (BlueZ's exchange)
            mtu = int(rx.max_write_without_response_size) + 3
            bearer = BleakBearer(client, address)
            options = self.hooks.link_options
            stream = GattStream(bearer, Role.CENTRAL, mtu=mtu, mode=mode, **options)
            opened = stream
            await client.start_notify(
                str(TX_UUID), lambda _char, value: opened.value_received(bytes(value))
            )
            await stream.open(timeout=max(0.1, deadline - loop.time()))
            return stream
        except BaseException as exc:
            await self._release(client)
            if isinstance(exc, TransportError | asyncio.CancelledError):
                raise
            if isinstance(exc, Exception):
                raise TransportError(f"opening a link to ble://{address} failed: {exc}") from exc
            raise
