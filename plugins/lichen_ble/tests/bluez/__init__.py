"""A BlueZ D-Bus stand-in for tests: bleak and bluezero run unmodified against it.

No Bluetooth radio or kernel support exists on a build machine, so bluetoothd
cannot run. This package puts in its place:

* a private ``dbus-daemon`` (a "system" bus on a unix socket in a temporary
  directory, anyone may own any name): :func:`start_bus`;
* an ``org.bluez`` on it (``python -m lichen_ble.tests.bluez``,
  :func:`start_bluez`), whose adapters are Bumble hosts on emulated
  controllers: ``Adapter1`` (discovery sessions and filters), ``Device1``
  (Connect, Disconnect, ServicesResolved), ``GattService1``,
  ``GattCharacteristic1`` (ReadValue, WriteValue, StartNotify, StopNotify,
  MTU) and ``GattDescriptor1`` for the central role; ``GattManager1`` and
  ``LEAdvertisingManager1`` for the peripheral role; ObjectManager's
  InterfacesAdded/Removed and PropertiesChanged signals. Each behaviour
  follows BlueZ's ``doc/org.bluez.*.rst`` (and its source where the page is
  silent), cited where it matters.

Both processes are stopped by their PID. Hosts in other processes (a Bumble
node) reach the stand-in's emulated radio through the controllers it serves
(``--serve``).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Bus", "StandIn", "dbus_daemon_binary", "start_bluez", "start_bus"]

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:dir={directory}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
  </policy>
</busconfig>
"""


def dbus_daemon_binary() -> str:
    """dbus-daemon's path, or skip the test saying how to get it."""
    import pytest

    found = shutil.which("dbus-daemon")
    if found is None:
        pytest.skip("dbus-daemon is not installed (scripts/system-deps.sh test installs it)")
    return found


def _read_line(process: subprocess.Popen[str], what: str, timeout: float) -> str:
    """The process's next line of output, within ``timeout``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        if ready:
            line = process.stdout.readline()
            if line:
                return line.strip()
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
    raise TimeoutError(f"{what} printed nothing within {timeout:g} s")


def _stop(process: subprocess.Popen[str] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Bus:
    """A private dbus-daemon; ``address`` is what DBUS_SYSTEM_BUS_ADDRESS takes."""

    directory: Path
    address: str
    process: subprocess.Popen[str] = field(repr=False)

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_bus() -> Bus:
    """Start a dbus-daemon on a unix socket in a new temporary directory (short
    enough for a socket path, unlike pytest's)."""
    binary = dbus_daemon_binary()
    directory = Path(tempfile.mkdtemp(prefix="lichen-bus-"))
    config = directory / "bus.conf"
    config.write_text(_CONFIG.format(directory=directory))
    process = subprocess.Popen(
        [binary, f"--config-file={config}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = _read_line(process, "dbus-daemon", 10)
    except BaseException:
        _stop(process)
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Bus(directory, address, process)


@dataclass
class StandIn:
    """The ``org.bluez`` stand-in's process."""

    bus: Bus
    process: subprocess.Popen[str] = field(repr=False)

    def stop(self) -> None:
        _stop(self.process)

    def adapter(self, index: int) -> str:
        return f"hci{index}"


def start_bluez(
    bus: Bus,
    *,
    adapters: int = 1,
    serve: list[str] | None = None,
    hci: list[str] | None = None,
    experimental: bool = False,
    rate: float | None = None,
    log: Path | None = None,
) -> StandIn:
    """Start ``org.bluez`` on ``bus`` (see the package) and wait until it owns the
    name. ``serve``: controller endpoints for hosts elsewhere on its radio."""
    command = [
        sys.executable,
        "-m",
        "lichen_ble.tests.bluez",
        "--bus",
        bus.address,
        "--adapters",
        str(adapters),
    ]
    for endpoint in serve or []:
        command += ["--serve", endpoint]
    for transport in hci or []:
        command += ["--hci", transport]
    if experimental:
        command.append("--experimental")
    if rate is not None:
        command += ["--rate", str(rate)]
    errors = log.open("a") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        line = _read_line(process, "the org.bluez stand-in", 30)
        if line != "ready":
            raise RuntimeError(f"the org.bluez stand-in said {line!r}")
    except BaseException:
        _stop(process)
        raise
    finally:
        if log is not None and not isinstance(errors, int):
            errors.close()
    return StandIn(bus, process)
