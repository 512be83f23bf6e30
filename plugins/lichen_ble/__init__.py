"""lichen_ble: the BLE transport — Lichen's GATT service over Bumble or BlueZ.

The layers, each its own module (``docs/ble.md`` is the specification):

=================  ==========================================================
``service``        the GATT service as data: UUIDs, the info value, the
                   advertisement (service data, scan response)
``segments``       the link segments' wire format
``link``           :class:`GattLink`, the sans-IO link core shared by every
                   back end: GATT values in, stream events out; OPEN,
                   CLOSE, timers
``sending``        its sending half: segmentation, credit spent, go-back-N
``receiving``      its receiving half: reassembly, ACK and NAK, credit granted
``events``         what the link core hands out; roles, value sizes
``rto``            the retransmission timeout (RFC 6298)
``stream``         :class:`GattStream`, its asyncio shell (an agent
                   ``Stream``), and :class:`GattBearer`, what a back end
                   implements per connection
``memory``         in-memory GATT connections shaped like a slow radio, with
                   loss and duplication (tests, benchmarks)
``radio``          what the transport and every back end share: the hooks a
                   radio calls, a sighting, how incoming links are opened
``bumble_radio``   the Bumble back end: both roles on one Bumble host
``bluez_radio``    the BlueZ back end: ``bleak_central`` (bleak scans and
                   dials) and ``bluezero_peripheral`` (bluezero advertises
                   and accepts, its GLib loop in a thread: ``glib_thread``)
``config``         :class:`BleConfig` (``[[transports.ble]]``), ``ble://`` addresses
``transport``      :class:`BleTransport`, the plugin
``controllers``    emulated controllers for hosts in other processes
``cli``            ``lichen ble scan`` and ``lichen ble controllers``
=================  ==========================================================

Importing this package imports no Bluetooth stack.
"""

from .config import BleConfig, parse_address
from .link import (
    MAX_VALUE,
    NEED_DATA,
    DataReceived,
    EndOfStream,
    GattLink,
    LinkClosed,
    LinkOpened,
    Role,
    value_size,
)
from .segments import CloseCode
from .service import (
    INFO_UUID,
    RX_UUID,
    SERVICE_UUID,
    TX_UUID,
    Advert,
    Info,
    advertising_data,
    parse_advertising_data,
)
from .stream import GattBearer, GattStream
from .transport import BleTransport

__all__ = [
    "INFO_UUID",
    "MAX_VALUE",
    "NEED_DATA",
    "RX_UUID",
    "SERVICE_UUID",
    "TX_UUID",
    "Advert",
    "BleConfig",
    "BleTransport",
    "CloseCode",
    "DataReceived",
    "EndOfStream",
    "GattBearer",
    "GattLink",
    "GattStream",
    "Info",
    "LinkClosed",
    "LinkOpened",
    "Role",
    "advertising_data",
    "parse_address",
    "parse_advertising_data",
    "value_size",
]
