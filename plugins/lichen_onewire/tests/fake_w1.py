"""A fake 1-Wire sysfs tree in the kernel's own layout and file formats, for tests.

The layout is the kernel's::

    sys/devices/w1_bus_master1/28-0316a2795aff/{w1_slave,temperature,resolution}
    sys/bus/w1/devices/28-0316a2795aff -> ../../../devices/w1_bus_master1/28-0316a2795aff
    sys/bus/w1/devices/w1_bus_master1  -> ../../../devices/w1_bus_master1

File contents are built the way ``w1_therm`` builds them: a DS18B20 scratchpad
(temperature in 1/16 °C, TH, TL, configuration, reserved bytes, Dallas CRC-8),
the CRC verdict and ``t=`` in millidegrees. A file that must change between
two reads — a CRC failure the retry gets past — is a FIFO whose writer hands
out the next content to each reader, as sysfs makes a fresh reading per open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

__all__ = ["FakeW1", "crc8", "w1_slave"]

CONFIG_BY_BITS = {9: 0x1F, 10: 0x3F, 11: 0x5F, 12: 0x7F}


def crc8(data: bytes) -> int:
    """Dallas/Maxim CRC-8 (x^8 + x^5 + x^4 + 1, reflected), as the kernel's w1_calc_crc8."""
    crc = 0
    for byte in data:
        for bit in range(8):
            mix = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
    return crc


def scratchpad(millidegrees: int, bits: int = 12) -> bytes:
    raw = round(millidegrees * 16 / 1000) & 0xFFFF
    body = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, CONFIG_BY_BITS[bits], 0xFF, 0x0C, 0x10])
    return body + bytes([crc8(body)])


def w1_slave(
    millidegrees: int | None = None, *, crc_ok: bool = True, pad: bytes | None = None
) -> str:
    """A ``w1_slave`` file as the kernel writes it."""
    if pad is None:
        assert millidegrees is not None
        pad = scratchpad(millidegrees)
    if not crc_ok:
        pad = pad[:8] + bytes([pad[8] ^ 0x5A])  # a bit flipped on the wire
    computed = crc8(pad[:8])
    verdict = "YES" if pad[8] == computed else "NO"
    raw = int.from_bytes(pad[:2], "little", signed=True)
    t = int(raw * 1000 / 16)  # the kernel's integer arithmetic truncates toward zero
    hexes = " ".join(f"{b:02x}" for b in pad)
    return f"{hexes} : crc={computed:02x} {verdict}\n{hexes} t={t}\n"


class _Served:
    """A file that gives ``contents`` one read after another (the last one repeats).

    The path is a symlink to a FIFO. The writer waits for a reader to open the
    FIFO, points the symlink at a fresh FIFO for the next reader, then writes
    and closes: each reader gets exactly one content, however slowly it reads."""

    def __init__(self, path: Path, contents: list[str]) -> None:
        self.path, self.contents, self.reads = path, contents, 0
        self._fifos = path.parent / f".{path.name}.fifo"
        self._fifos.mkdir()
        self._current = self._next_fifo()
        path.unlink(missing_ok=True)
        path.symlink_to(self._current)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _next_fifo(self) -> Path:
        fifo = self._fifos / str(self.reads)
        os.mkfifo(fifo)
        return fifo

    def _serve(self) -> None:
        while True:
            fd = os.open(self._current, os.O_WRONLY)  # waits for a reader
            try:
                if self._closed:
                    return
                text = self.contents[min(self.reads, len(self.contents) - 1)]
                self.reads += 1
                self._current = self._next_fifo()
                link = self.path.with_name(f".{self.path.name}.link")
                link.symlink_to(self._current)
                link.replace(self.path)  # atomically: the next reader opens the new FIFO
                with contextlib.suppress(BrokenPipeError):
                    os.write(fd, text.encode())
            finally:
                os.close(fd)

    def close(self) -> None:
        self._closed = True
        reader = os.open(self._current, os.O_RDONLY | os.O_NONBLOCK)  # releases the writer
        try:
            self._thread.join(5)
        finally:
            os.close(reader)


class FakeW1:
    """A 1-Wire bus master with probes, below ``base``."""

    def __init__(self, base: Path) -> None:
        self.master = base / "sys" / "devices" / "w1_bus_master1"
        self.root = base / "sys" / "bus" / "w1" / "devices"
        self.master.mkdir(parents=True)
        self.root.mkdir(parents=True)
        (self.root / "w1_bus_master1").symlink_to(os.path.relpath(self.master, self.root))
        (self.master / "w1_master_slaves").write_text("")
        self._served: list[_Served] = []

    def add(
        self,
        probe: str,
        millidegrees: int = 21_500,
        *,
        temperature_file: bool = True,
        w1_slave_file: bool = True,
        resolution: int | None = 12,
    ) -> Path:
        """A probe appears (as after the kernel's bus search)."""
        directory = self.master / probe
        directory.mkdir()
        if w1_slave_file:
            (directory / "w1_slave").write_text(w1_slave(millidegrees))
        if temperature_file:
            (directory / "temperature").write_text(f"{millidegrees}\n")
        if resolution is not None:
            (directory / "resolution").write_text(f"{resolution}\n")
        (self.root / probe).symlink_to(os.path.relpath(directory, self.root))
        return directory

    def write(self, probe: str, name: str, text: str) -> None:
        (self.master / probe / name).write_text(text)

    def serve(self, probe: str, contents: list[str], name: str = "w1_slave") -> _Served:
        """Make ``name`` give ``contents`` one read after another."""
        served = _Served(self.master / probe / name, contents)
        self._served.append(served)
        return served

    def remove(self, probe: str) -> None:
        """The probe vanishes (the kernel drops it after failed searches)."""
        (self.root / probe).unlink()
        shutil.rmtree(self.master / probe)

    def close(self) -> None:
        for served in self._served:
            served.close()
