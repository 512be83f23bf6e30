"""The BlueZ back end (``backend = "bluez"``): bleak for the central role, bluezero
for the peripheral, both talking to ``bluetoothd`` over the system D-Bus.

:class:`BluezRadio` has the radio interface the transport drives (the one
:class:`~lichen_ble.bumble_radio.BumbleRadio` has): ``start``, ``advertise``,
``scan``, ``read_info``, ``dial``, ``close``, ``incoming``. It starts only
the roles the configuration asks for, so a node that only dials needs no
bluezero (nor dbus-python, nor GLib), and imports them only then: ``import
lichen_ble`` stays free of any Bluetooth stack. Every link is the same
:class:`~lichen_ble.link.GattLink` the Bumble back end runs.
"""

from __future__ import annotations

from typing import Any

from .radio import RadioHooks
from .segments import Mode
from .service import Info, parse_advertising_data
from .stream import GattStream

__all__ = ["BluezRadio"]


class BluezRadio:
    """Lichen's GATT service on the BlueZ adapter ``adapter`` (see the module):
    the peripheral role when ``listen``, the central role when ``scan`` or
    dialling; both call back through ``hooks``."""

    def __init__(self, adapter: str, hooks: RadioHooks, *, listen: bool) -> None:
        from .bleak_central import BleakCentral

        self.adapter, self.listen, self.hooks = adapter, listen, hooks
        self.central = BleakCentral(adapter, hooks)
        self.peripheral: Any = None
        if listen:
            from .bluezero_peripheral import BluezeroPeripheral

            self.peripheral = BluezeroPeripheral(adapter, hooks)

    @property
    def incoming(self) -> int:
        return self.peripheral.incoming if self.peripheral is not None else 0

    @property
    def max_incoming(self) -> int:
        """One central at a time: BlueZ notifies every subscriber of tx."""
        return self.peripheral.max_incoming if self.peripheral is not None else 0

    async def start(self) -> None:
        await self.central.start()
        if self.peripheral is not None:
            await self.peripheral.start()

    async def close(self) -> None:
        await self.central.close()
        if self.peripheral is not None:
            await self.peripheral.close()

    async def advertise(self, data: bytes | None) -> None:
        """Advertise ``data`` (the advertising data the transport built; BlueZ
        builds its own PDU from the service data in it). None: stop."""
        if self.peripheral is None:
            return
        advert = parse_advertising_data(data) if data is not None else None
        await self.peripheral.advertise(advert.encode() if advert is not None else None)

    async def scan(self, on: bool) -> None:
        await self.central.scan(on)

    async def read_info(self, address: str, timeout: float) -> Info:
        return await self.central.read_info(address, timeout)

    async def dial(
        self, address: str, timeout: float, expect: bytes | None = None, mode: Mode = Mode.SYNC
    ) -> GattStream:
        return await self.central.dial(address, timeout, expect, mode)
