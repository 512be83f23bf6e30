"""The parsers, fed the kernel's and the firmware's real output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lichen_system.readers import (
    THROTTLE_BITS,
    decode_throttled,
    disk_usage,
    memory,
    parse_loadavg,
    parse_meminfo,
    parse_millidegrees,
    parse_throttled,
    parse_uptime,
    read_text,
)

# /proc/meminfo of a Raspberry Pi 3 B+ (Raspberry Pi OS, kernel 6.1), abridged
PI_MEMINFO = """\
MemTotal:         929440 kB
MemFree:          493628 kB
MemAvailable:     706952 kB
Buffers:           31224 kB
Cached:           251084 kB
SwapCached:            0 kB
Active:           163904 kB
Inactive:         188028 kB
SwapTotal:        102396 kB
SwapFree:         102396 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_meminfo_is_read_in_bytes() -> None:
    info = parse_meminfo(PI_MEMINFO)
    assert info["MemTotal"] == 929440 * 1024
    assert info["HugePages_Total"] == 0  # no unit: kept as it is
    assert memory(info) == (706952 * 1024, 929440 * 1024)


def test_memory_is_estimated_on_kernels_without_memavailable() -> None:
    old = "\n".join(line for line in PI_MEMINFO.splitlines() if "MemAvailable" not in line)
    available, _ = memory(parse_meminfo(old))
    assert available == (493628 + 31224 + 251084) * 1024
    with pytest.raises(ValueError, match="MemTotal"):
        memory(parse_meminfo("MemFree: 1 kB\n"))


def test_loadavg_uptime_and_thermal_zone() -> None:
    assert parse_loadavg("0.67 0.59 0.59 1/138 19194\n") == (0.67, 0.59, 0.59)
    assert parse_uptime("350735.47 234388.90\n") == 350735.47
    assert parse_millidegrees("48312\n") == 48.312
    assert parse_millidegrees("-5250\n") == -5.25
    for bad in ("", "0.1 0.2"):
        with pytest.raises(ValueError):
            parse_loadavg(bad)
    with pytest.raises(ValueError):
        parse_uptime("")


def test_throttled_from_sysfs_and_from_vcgencmd() -> None:
    assert parse_throttled("50005\n") == 0x50005  # sysfs: hex without 0x
    assert parse_throttled("throttled=0x50005\n") == 0x50005  # vcgencmd
    assert parse_throttled("0\n") == 0
    assert parse_throttled("throttled=0x0\n") == 0
    for bad in ("", "volts=1.2V", "throttled=", "zz"):
        with pytest.raises(ValueError):
            parse_throttled(bad)


def test_the_documented_bits_are_decoded() -> None:
    # 0x50005: under-voltage now and since boot, throttled now and since boot
    flags = decode_throttled(0x50005)
    assert {name for name, on in flags.items() if on} == {
        "undervoltage",
        "throttled",
        "undervoltage_since_boot",
        "throttled_since_boot",
    }
    flags = decode_throttled(0x80008 | 0x20002)
    assert {name for name, on in flags.items() if on} == {
        "soft_temp_limit",
        "soft_temp_limit_since_boot",
        "frequency_capped",
        "frequency_capped_since_boot",
    }
    assert not any(decode_throttled(0).values())


@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_every_flag_is_exactly_its_bit(word: int) -> None:
    flags = decode_throttled(word)
    assert set(flags) == set(THROTTLE_BITS)
    rebuilt = sum(1 << THROTTLE_BITS[name] for name, on in flags.items() if on)
    assert rebuilt == word & sum(1 << bit for bit in THROTTLE_BITS.values())


def test_disk_usage_of_a_path_not_made_yet_is_its_parents(tmp_path: Path) -> None:
    free, total = disk_usage(tmp_path / "state" / "sensors" / "health")
    st_ = os.statvfs(tmp_path)
    assert total == st_.f_blocks * st_.f_frsize
    assert 0 <= free <= total


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="no procfs on this machine")
def test_this_machines_proc_parses() -> None:
    available, total = memory(parse_meminfo(read_text(Path("/proc/meminfo"))))
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available <= total
    assert abs(total - physical) < 0.1 * physical
    assert all(x >= 0 for x in parse_loadavg(read_text(Path("/proc/loadavg"))))
    assert parse_uptime(read_text(Path("/proc/uptime"))) > 0
