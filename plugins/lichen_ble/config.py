"""The ``[[transports.ble]]`` table, and ``ble://`` addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent import NodeId
from agent.errors import AddressError, ConfigError
from agent.plugin_api import LinkAddress, TransportConfig, setting

__all__ = ["ADDRESS_HELP", "BleConfig", "is_device_address", "parse_address"]

ADDRESS_HELP = (
    "write ble://NODE-ID to dial a node (e.g. ble://lc1…, as `lichen id` prints it), "
    "ble://AA:BB:CC:DD:EE:FF to dial a device address, or ble:// to listen"
)
_DEVICE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def is_device_address(text: str) -> bool:
    """``AA:BB:CC:DD:EE:FF``."""
    return bool(_DEVICE.fullmatch(text))


def parse_address(address: str, *, listen: bool = False) -> LinkAddress:
    """``ble://NODE-ID``, ``ble://AA:BB:CC:DD:EE:FF`` or (``listen``) ``ble://`` →
    its :class:`LinkAddress` (host: the node id, the upper-case device address, or
    empty); ``ble:NODE-ID`` and ``ble:`` are accepted too.

    >>> parse_address("ble:", listen=True).url
    'ble://'
    >>> parse_address("ble://aa:bb:cc:dd:ee:ff").host
    'AA:BB:CC:DD:EE:FF'
    """
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, sep, rest = address.partition(":")
    if scheme != "ble" or not sep:
        raise AddressError(address, "is not a ble:// address", ADDRESS_HELP)
    if listen:
        if rest:
            raise AddressError(
                address, "a node listens on its own radio, not at an address", "write ble://"
            )
        return LinkAddress("ble", "")
    if is_device_address(rest):
        return LinkAddress("ble", rest.upper())
    try:
        node = NodeId.parse(rest)
    except ValueError as exc:
        problem = "names no node" if not rest else str(exc)
        raise AddressError(address, problem, ADDRESS_HELP) from None
    return LinkAddress("ble", str(node))


def _check_hci(hci: str) -> None:
    if ":" not in hci and not re.fullmatch(r"[a-z0-9-]+", hci):
        raise ValueError(f"{hci!r} is not a Bumble transport name")


def _check_adapter(adapter: str) -> None:
    if not re.fullmatch(r"hci[0-9]{1,3}", adapter):
        raise ValueError(f"{adapter!r} is not a BlueZ adapter name (hci0, hci1, …)")


@dataclass(frozen=True, kw_only=True)
class BleConfig(TransportConfig):
    """One ``[[transports.ble]]`` table; ``sample.toml`` shows every key."""

    backend: Literal["bumble", "bluez"] = setting(
        "bumble",
        help='the Bluetooth stack: "bumble" (an HCI dongle or an emulated controller, '
        'through the hci key) or "bluez" (the system\'s bluetoothd over D-Bus, on the '
        "adapter key: bleak dials, bluezero advertises and accepts one central at a time)",
    )
    hci: str | None = setting(
        None,
        check=_check_hci,
        help='the Bumble HCI transport, e.g. "usb:0", "serial:/dev/ttyACM0", '
        '"tcp-client:127.0.0.1:7401" (an emulated controller); backend "bumble" only',
    )
    adapter: str = setting(
        "hci0",
        check=_check_adapter,
        help='the BlueZ adapter, e.g. "hci0" (as `bluetoothctl list` shows it); '
        'backend "bluez" only',
    )
    listen: bool = setting(True, help="advertise and accept connections (the peripheral role)")
    scan: bool = setting(True, help="look for nodes nearby and dial them (the central role)")
    max_connections: int = setting(4, min=1, max=15, help="incoming connections taken at once")
    connect_timeout: float = setting(
        10.0, min=0.5, max=300.0, help="seconds finding and opening a link may take"
    )
    link_timeout: float = setting(
        20.0,
        min=1.0,
        max=600.0,
        help="seconds without a word from the peer, while waiting for it, before a link is ended",
    )
    seen_for: float = setting(
        30.0, min=1.0, max=3600.0, help="seconds a node stays dialable after its last advertisement"
    )
    announce_interval: float = setting(
        1.0,
        min=0.1,
        max=600.0,
        help="seconds: at most one change of the advertised heads digest per interval",
    )

    def __post_init__(self) -> None:
        if self.backend == "bumble" and not self.hci:
            raise ConfigError(
                "is required",
                key="hci",
                fix='write hci = "usb:0" (a dongle) or "tcp-client:127.0.0.1:7401" (an emulated '
                'controller), or use backend = "bluez" with the system\'s Bluetooth',
            )
        if self.backend == "bluez" and self.hci:
            raise ConfigError(
                "is for the bumble back end; BlueZ owns its adapters itself",
                key="hci",
                value=self.hci,
                fix='remove hci and name the adapter: adapter = "hci0"',
            )

    @property
    def radio(self) -> str:
        """Where the radio is, for messages: the HCI transport or the adapter."""
        return str(self.hci) if self.backend == "bumble" else f"BlueZ {self.adapter}"
