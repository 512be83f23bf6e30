"""Board-health sources: parsers for the kernel's own file formats, and where they live.

Every parser takes the text of one file (or one command's output) exactly as the
kernel or the firmware writes it and returns plain numbers; none of them touches
the file system, so the tests feed them captured real output. The few functions
that do I/O (:func:`read_text`, :func:`disk_usage`, :func:`run_vcgencmd`) are thin.

Formats, as written by Linux and the Raspberry Pi firmware:

``/proc/loadavg``
    ``0.67 0.59 0.59 1/138 19194`` — 1, 5 and 15 minute load averages first.
``/proc/meminfo``
    ``MemAvailable:   24330580 kB`` — one ``Key: value kB`` per line (kB = KiB).
``/proc/uptime``
    ``350735.47 234388.90`` — seconds since boot, then idle seconds.
``/sys/class/thermal/thermal_zone0/temp``
    ``48312`` — millidegrees Celsius.
``/sys/devices/platform/soc/soc:firmware/get_throttled``
    ``50005`` — the firmware's throttle word in hex, without ``0x``.
``vcgencmd get_throttled``
    ``throttled=0x50005`` — the same word.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = [
    "THROTTLE_BITS",
    "decode_throttled",
    "disk_usage",
    "memory",
    "parse_loadavg",
    "parse_meminfo",
    "parse_millidegrees",
    "parse_throttled",
    "parse_uptime",
    "read_text",
    "run_vcgencmd",
]

#: The documented bits of the firmware's throttle word (``vcgencmd get_throttled``):
#: bits 0–3 describe now, bits 16–19 whether it happened since boot.
THROTTLE_BITS: dict[str, int] = {
    "undervoltage": 0,
    "frequency_capped": 1,
    "throttled": 2,
    "soft_temp_limit": 3,
    "undervoltage_since_boot": 16,
    "frequency_capped_since_boot": 17,
    "throttled_since_boot": 18,
    "soft_temp_limit_since_boot": 19,
}

#: where the firmware driver publishes the throttle word, below the sysfs root
THROTTLED_SYSFS = Path("devices/platform/soc/soc:firmware/get_throttled")


def read_text(path: Path) -> str:
    """The whole of a small kernel file (procfs and sysfs files are read in one go)."""
    with open(path, encoding="ascii") as f:
        return f.read()


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """``/proc/loadavg`` → the 1, 5 and 15 minute load averages."""
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"/proc/loadavg has {len(parts)} fields, expected at least 3")
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` → bytes per key (``MemTotal``, ``MemAvailable`` …).

    Values given in ``kB`` (which the kernel means as KiB) are converted to
    bytes; unit-less values (``HugePages_Total``) are kept as they are."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


def memory(meminfo: dict[str, int]) -> tuple[int, int]:
    """``(available, total)`` bytes. Kernels before 3.14 lack ``MemAvailable``;
    there it is estimated as free + buffers + page cache, as ``free`` did."""
    if "MemTotal" not in meminfo:
        raise ValueError("/proc/meminfo has no MemTotal line")
    available = meminfo.get("MemAvailable")
    if available is None:
        available = sum(meminfo.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return available, meminfo["MemTotal"]


def parse_uptime(text: str) -> float:
    """``/proc/uptime`` → seconds since boot."""
    parts = text.split()
    if not parts:
        raise ValueError("/proc/uptime is empty")
    return float(parts[0])


def parse_millidegrees(text: str) -> float:
    """A thermal zone's ``temp`` (millidegrees Celsius) → °C."""
    return int(text.strip()) / 1000.0


def parse_throttled(text: str) -> int:
    """The throttle word from sysfs (``50005``) or vcgencmd (``throttled=0x50005``)."""
    value = text.strip()
    if "=" in value:
        key, _, value = value.partition("=")
        if key.strip() != "throttled":
            raise ValueError(f"unexpected get_throttled output {text.strip()!r}")
    value = value.strip()
    if value.lower().startswith("0x"):
        value = value[2:]
    if not value:
        raise ValueError("get_throttled is empty")
    return int(value, 16)


def decode_throttled(word: int) -> dict[str, bool]:
    """Each documented flag of the throttle word, by name (see :data:`THROTTLE_BITS`)."""
    return {name: bool(word >> bit & 1) for name, bit in THROTTLE_BITS.items()}


def disk_usage(path: Path) -> tuple[int, int]:
    """``(free, total)`` bytes of the file system holding ``path``.

    ``free`` is what an unprivileged process may still write (``f_bavail``), the
    number that matters to the agent; a path that does not exist yet is measured
    at its nearest existing parent."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def run_vcgencmd(command: str, timeout: float = 2.0) -> str:
    """Output of ``<command> get_throttled`` (OSError or ValueError if it fails)."""
    try:
        done = subprocess.run(
            [command, "get_throttled"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OSError(f"{command} get_throttled took more than {timeout} s") from None
    if done.returncode != 0:
        raise OSError(f"{command} get_throttled failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
