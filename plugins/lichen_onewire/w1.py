"""The Linux 1-Wire thermometer driver's (``w1_therm``) sysfs formats, parsed without I/O.

Each probe is a directory ``/sys/bus/w1/devices/<family>-<serial>`` (a symlink
into ``devices/w1_bus_master1/``). Reading one of its files makes the kernel
start a conversion, wait for it (up to 750 ms at 12 bits) and read the probe's
9-byte scratchpad:

``w1_slave`` (every kernel)::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

    The first line is the scratchpad as read, the CRC the kernel computed over
    its first 8 bytes, and the verdict (``YES``/``NO``; a change to the
    kernel's string helpers prints ``yes``/``no``). After a failed CRC the
    second line repeats the *last good* scratchpad, but ``t=`` (millidegrees
    Celsius) is computed from the bad one.
    Kernels since 5.10 retry a failed CRC themselves and, when every try
    fails, return an empty file.

``temperature`` (Linux ≥ 5.10)::

    23125

    Millidegrees Celsius; empty when the read failed.

Two readings pass the CRC and are still wrong: ``85000`` (85 °C, the
scratchpad's power-on value: the probe reset and no conversion ran, typical of
a weak supply or parasite power), and an all-zero scratchpad (``00 … 00 :
crc=00 YES``, ``t=0``), what a bus held low reads.

The parsers do no I/O; :class:`W1Bus` is the thin shell over the files. Its
root is configurable, so tests run on a tree laid out like
``/sys/bus/w1/devices``, and a node with two bus masters can run one instance
per master's directory.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "FAMILIES",
    "POWER_ON_RESET",
    "PROBE_ID",
    "Attribute",
    "Sample",
    "W1Bus",
    "W1FormatError",
    "parse_temperature",
    "parse_w1_slave",
    "resolution_step",
]

#: 1-Wire family codes of the thermometers ``w1_therm`` drives
FAMILIES = {
    "10": "DS18S20",
    "22": "DS1822",
    "28": "DS18B20",
    "3b": "DS1825 / MAX31850",
    "42": "DS28EA00",
}
#: the scratchpad's power-on temperature, in millidegrees
POWER_ON_RESET = 85_000
#: a probe's directory name: family code, dash, 48-bit serial number (lower-case hex)
PROBE_ID = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{12}$")
#: the two files a probe's reading can come from
Attribute = Literal["w1_slave", "temperature"]

_BYTES = r"((?:[0-9a-f]{2} ){9})"
_CRC_LINE = re.compile(_BYTES + r": crc=([0-9a-f]{2}) (yes|no)$", re.IGNORECASE)
_T_LINE = re.compile(_BYTES + r"t=(-?\d+)$", re.IGNORECASE)


class W1FormatError(ValueError):
    """The file is not what ``w1_therm`` writes (or is empty: the read failed)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One read of a probe: the temperature in millidegrees, the CRC verdict and
    the scratchpad as read (None from the ``temperature`` file, which has neither)."""

    millidegrees: int
    crc_ok: bool = True
    scratchpad: bytes | None = None

    @property
    def blank(self) -> bool:
        """An all-zero or all-one scratchpad: nothing answered on the bus."""
        return self.scratchpad in (bytes(9), b"\xff" * 9)

    @property
    def power_on_reset(self) -> bool:
        """85 °C: the value a probe holds before its first conversion."""
        return self.millidegrees == POWER_ON_RESET


def parse_w1_slave(text: str) -> Sample:
    """The two lines of a ``w1_slave`` file."""
    lines = text.strip().splitlines()
    if not lines:
        raise W1FormatError("empty: the kernel could not read the probe (bus error or CRC)")
    if len(lines) != 2:
        raise W1FormatError(f"expected 2 lines, got {len(lines)}: {text.strip()[:80]!r}")
    crc_line = _CRC_LINE.match(lines[0].strip())
    t_line = _T_LINE.match(lines[1].strip())
    if crc_line is None or t_line is None:
        raise W1FormatError(f"not a w1_therm reading: {text.strip()[:120]!r}")
    return Sample(
        millidegrees=int(t_line.group(2)),
        crc_ok=crc_line.group(3).lower() == "yes",
        scratchpad=bytes.fromhex(crc_line.group(1)),
    )


def parse_temperature(text: str) -> Sample:
    """A ``temperature`` file (millidegrees; the kernel has checked the CRC)."""
    value = text.strip()
    if not value:
        raise W1FormatError("empty: the kernel could not read the probe (bus error or CRC)")
    try:
        return Sample(millidegrees=int(value))
    except ValueError:
        raise W1FormatError(f"not a temperature in millidegrees: {value[:40]!r}") from None


def resolution_step(bits: int | None) -> float:
    """The stored resolution (a power of ten) for a probe converting at ``bits``:
    9 bits step 0.5 °C → 0.1; 10 bits 0.25 → 0.01; 11 and 12 bits, and unknown,
    → 0.001 (the kernel's millidegrees)."""
    return {9: 0.1, 10: 0.01}.get(bits or 12, 0.001)


class W1Bus:
    """The probes below ``root`` (default ``/sys/bus/w1/devices``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self) -> bool:
        return self.root.is_dir()

    def discover(self, families: Collection[str]) -> list[str]:
        """Ids of the probes present now whose family code is in ``families``
        (bus masters, ``00-…`` ghosts of failed searches and other devices are
        skipped), sorted."""
        try:
            names = [entry.name for entry in self.root.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(
            name
            for name in names
            if PROBE_ID.match(name) and name[:2] in families and (self.root / name).is_dir()
        )

    def present(self, probe: str) -> bool:
        return (self.root / probe).is_dir()

    def read(self, probe: str, attribute: Attribute) -> Sample:
        """One conversion of ``probe``, from ``attribute`` (or the other file if the
        kernel lacks that one). FileNotFoundError if the probe is gone; OSError
        if the read fails; W1FormatError if the file makes no sense."""
        directory = self.root / probe
        path = directory / attribute
        if not path.exists():
            other: Attribute = "temperature" if attribute == "w1_slave" else "w1_slave"
            if (directory / other).exists():
                attribute, path = other, directory / other
        with open(path, encoding="ascii") as f:
            text = f.read()
        return parse_w1_slave(text) if attribute == "w1_slave" else parse_temperature(text)

    def resolution(self, probe: str) -> int | None:
        """The probe's conversion resolution in bits (9–12) where the kernel shows it."""
        try:
            with open(self.root / probe / "resolution", encoding="ascii") as f:
                bits = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return bits if 9 <= bits <= 12 else None

    def set_resolution(self, probe: str, bits: int) -> None:
        """Set the conversion resolution (in the probe's RAM: lost at power-off, so
        the sensor sets it again each time it starts). Kernels ≥ 5.10 take it in
        ``resolution``, older ones as ``9``…``12`` written to ``w1_slave``. Needs
        write access to sysfs (root, or a udev rule); OSError otherwise."""
        directory = self.root / probe
        target = directory / "resolution"
        if not target.exists():
            target = directory / "w1_slave"
        with open(target, "w", encoding="ascii") as f:
            f.write(f"{bits}\n")
