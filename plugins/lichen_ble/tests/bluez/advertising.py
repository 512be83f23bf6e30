"""Registered advertisements (the peripheral role's advertising), sent by the
adapters' Bumble controllers.

``LEAdvertisingManager1.RegisterAdvertisement`` (doc/org.bluez.LEAdvertisingManager.rst):
the stand-in reads the advertisement's properties and advertises them, as
advertising.c builds them, 31 bytes at most (legacy advertising: one
advertising set per emulated controller). An advertisement whose owner leaves
the bus is removed, as BlueZ does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, Variant

from .adapter import AdapterStack
from .calls import BusCalls
from .objects import error

__all__ = ["Advert", "Advertisements"]

PROPS = "org.freedesktop.DBus.Properties"
LEGACY_ADV_MAX = 31


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
class Advert:
    """A registered advertisement: its owner, its path, the adapter sending it."""

    stack: AdapterStack
    sender: str
    path: str


class Advertisements:
    """The advertisements registered on the adapters (see the module). With
    ``experimental`` the ScanResponse* properties are honoured, as
    ``bluetoothd --experimental`` does; without, they are ignored."""

    def __init__(self, calls: BusCalls, *, experimental: bool = False) -> None:
        self.calls, self.experimental = calls, experimental
        self.adverts: list[Advert] = []

    def of(self, stack: AdapterStack) -> list[Advert]:
        """The advertisements on ``stack`` (one at most)."""
        return [a for a in self.adverts if a.stack is stack]

    def counter(self, stack: AdapterStack) -> Callable[[], int]:
        """How many advertisements ``stack`` has, when asked (``ActiveInstances``)."""
        return lambda: len(self.of(stack))

    def client_gone(self, name: str) -> None:
        """The client ``name`` left the bus: its advertisements stop."""
        for advert in [a for a in self.adverts if a.sender == name]:
            self.adverts.remove(advert)
            self.calls.spawn(advert.stack.device.stop_advertising())

    async def register(self, stack: AdapterStack, msg: Message) -> None:
        """``RegisterAdvertisement``: read its properties and advertise them."""
        path = msg.body[0]
        if any(a.sender == msg.sender and a.path == path for a in self.adverts):
            raise error("AlreadyExists", "Already Exists")
        if self.of(stack):  # one legacy advertising set on this controller
            raise error("NotPermitted", "Maximum advertisements reached")
        (props,) = await self.calls.call(
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

    async def unregister(self, msg: Message) -> None:
        """``UnregisterAdvertisement``: advertising stops."""
        for advert in self.adverts:
            if advert.sender == msg.sender and advert.path == msg.body[0]:
                self.adverts.remove(advert)
                await advert.stack.device.stop_advertising()
                return
        raise error("DoesNotExist", "Does Not Exist")
