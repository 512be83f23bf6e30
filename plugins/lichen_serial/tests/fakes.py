"""Test doubles with real bytes: a socat pty pair, and a microcontroller at one end.

:class:`PtyPair` runs ``socat`` to join two pseudo-terminals under fixed
paths — the agent opens ``host``, the test writes as the device on
``device`` — and stops it by PID, which is exactly what a pulled USB cable
looks like to the agent. :class:`FakeDevice` plays the firmware: it sends
frames built by the same encoder the C library is checked against, and
reads the agent's REQUEST frames.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from lichen_serial.frames import NEED_DATA, FrameDecoder, Request
from lichen_serial.payloads import Channel, FrameEncoder, Kind, RawValue, Status

__all__ = ["CLIMATE", "FakeDevice", "PtyPair", "wait_until"]

SOCAT = shutil.which("socat")

CLIMATE = [
    Channel("temperature", unit="°C", device_class="temperature", exponent=-2),
    Channel("humidity", unit="%", device_class="humidity", exponent=-1),
    Channel("open", device_class="door", kind=Kind.BOOLEAN),
]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    """Poll ``condition()`` every 10 ms; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)


class PtyPair:
    """``socat`` joining pty ``device`` (the test's end) to pty ``host`` (the agent's)."""

    def __init__(self, directory: Path) -> None:
        self.device = directory / "device"
        self.host = directory / "host"
        self._log = directory / "socat.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.devices: list[FakeDevice] = []  # closed with the pair

    def fake_device(self, boot_id: int = 1) -> FakeDevice:
        """A :class:`FakeDevice` on the ``device`` end, closed when the pair stops."""
        device = FakeDevice(self.device, boot_id=boot_id)
        self.devices.append(device)
        return device

    def start(self) -> None:
        assert SOCAT is not None, "socat is not installed (apt-get install socat)"
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    SOCAT,
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.device}",
                    f"pty,raw,echo=0,link={self.host}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_until(lambda: self.device.exists() and self.host.exists(), what="socat's ptys")

    def stop(self) -> None:
        """Stop socat by its PID: both ptys vanish, like an unplugged USB device."""
        for device in self.devices:
            device.close()
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for link in (self.device, self.host):  # socat removes them; be sure
            link.unlink(missing_ok=True)

    def __enter__(self) -> PtyPair:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FakeDevice:
    """A bridge device on the ``device`` end of a :class:`PtyPair`."""

    def __init__(self, path: Path, channels: Sequence[Channel] = CLIMATE, boot_id: int = 1) -> None:
        self.path = path
        self.channels = list(channels)
        self.encoder = FrameEncoder(boot_id)
        self.requests = 0
        self._decoder = FrameDecoder()
        self._fd = -1
        self.connect()

    def connect(self) -> None:
        """(Re)open the device end, e.g. after the pty pair was restarted."""
        self.close()
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 5
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                assert time.monotonic() < deadline, "the agent does not read"
                time.sleep(0.005)

    def describe(self) -> None:
        self.send(self.encoder.describe_all(self.channels))

    def readings(self, temperature: int, humidity: int = 500, door: int = 0) -> bytes:
        """One READINGS frame (not sent): raw integers, e.g. 2137 for 21.37 °C."""
        return self.encoder.readings(
            [RawValue(0, temperature), RawValue(1, humidity), RawValue(2, door)]
        )

    def send_readings(self, *temperatures: int, status: Status = Status.OK) -> None:
        for t in temperatures:
            self.send(self.encoder.readings([RawValue(0, t, status), RawValue(1, 500)]))

    def reboot(self, boot_id: int) -> None:
        """Start over as firmware does: a new boot id, the counter from 0."""
        self.encoder = FrameEncoder(boot_id)

    def poll_requests(self) -> int:
        """Read what the agent sent; the number of REQUEST frames so far."""
        while True:
            try:
                data = os.read(self._fd, 4096)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self._decoder.receive_data(data)
        while (event := self._decoder.next_event()) is not NEED_DATA:
            if isinstance(event, Request):
                self.requests += 1
        return self.requests

    def wait_for_request(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the agent has sent ``count`` REQUEST frames in all."""
        wait_until(lambda: self.poll_requests() >= count, timeout, f"{count} request(s)")
