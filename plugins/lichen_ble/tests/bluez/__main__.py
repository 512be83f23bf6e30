"""Run the ``org.bluez`` stand-in on a (private) bus until interrupted::

    python -m lichen_ble.tests.bluez --bus unix:path=/tmp/x/bus \\
        --adapters 2 --serve tcp-server:127.0.0.1:7401

``--adapters N`` makes ``/org/bluez/hci0`` … ``hciN-1``, each a Bumble host
on an emulated controller of one emulated radio in this process;
``--serve`` gives hosts in other processes controllers on that same radio
(``hci = "tcp-client:127.0.0.1:7401"``), as ``lichen ble controllers`` does.
``--hci TRANSPORT`` (repeatable) puts the adapters on controllers elsewhere
instead. ``--experimental`` is ``bluetoothd --experimental``. Prints
``ready`` when ``org.bluez`` is owned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from lichen_ble import controllers

from .adapter import AdapterStack
from .server import FakeBluez


def _address(index: int) -> str:
    pid = os.getpid()
    return f"F0:5A:{pid >> 8 & 0xFF:02X}:{pid & 0xFF:02X}:00:{index:02X}"


async def _device(index: int, link: Any, hci: str | None) -> tuple[Any, Any]:
    from bumble.device import Device
    from bumble.hci import Address

    name, address = f"hci{index}", Address(_address(index))
    if hci is None:
        device = controllers.local_device(name, address, link)
        transport = None
    else:
        from bumble.transport import open_transport

        transport = await open_transport(hci)
        device = Device.with_hci(name, address, transport.source, transport.sink)
    await device.power_on()
    return device, transport


async def run(args: argparse.Namespace) -> None:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    link = controllers.make_link(args.rate)
    servers = await controllers.serve(
        [controllers.parse_endpoint(e) for e in args.serve], link, log=lambda _line: None
    )
    hcis: list[str | None] = list(args.hci) or [None] * args.adapters
    made = [await _device(i, link, hci) for i, hci in enumerate(hcis)]
    bus = await MessageBus(bus_address=args.bus, bus_type=BusType.SYSTEM).connect()
    stacks = [AdapterStack(bus, i, device) for i, (device, _) in enumerate(made)]
    await FakeBluez(bus, stacks, experimental=args.experimental).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        bus.disconnect()
        for server in servers:
            server.close()
        for device, transport in made:
            with contextlib.suppress(Exception):
                await device.power_off()
            if transport is not None:
                await transport.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lichen_ble.tests.bluez", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--bus", required=True, help="the bus address (DBUS_SYSTEM_BUS_ADDRESS)")
    parser.add_argument("--adapters", type=int, default=1)
    parser.add_argument("--serve", action="append", default=[], metavar="ENDPOINT")
    parser.add_argument("--hci", action="append", default=[], metavar="TRANSPORT")
    parser.add_argument("--rate", type=float, default=None, help="bytes/s per controller")
    parser.add_argument("--experimental", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main(sys.argv[1:])
