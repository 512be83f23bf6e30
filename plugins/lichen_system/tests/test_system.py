"""The system sensor inside a real agent: fake /proc and /sys trees in the kernel's
real formats, and this machine's own /proc. Assertions are on readings in the log."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.testing import AgentHarness

from .test_readers import PI_MEMINFO

MIB = 1 << 20


def fake_pi(root: Path, *, thermal: bool = True, throttled: str | None = "50005\n") -> None:
    """A Raspberry Pi's /proc and /sys, as far as the sensor reads them."""
    proc, sysfs = root / "proc", root / "sys"
    proc.mkdir(parents=True)
    (proc / "loadavg").write_text("0.67 0.59 0.50 1/138 19194\n")
    (proc / "meminfo").write_text(PI_MEMINFO)
    (proc / "uptime").write_text("350735.47 234388.90\n")
    if thermal:
        zone = sysfs / "class" / "thermal" / "thermal_zone0"
        zone.mkdir(parents=True)
        (zone / "temp").write_text("48312\n")
        (zone / "type").write_text("cpu-thermal\n")
    if throttled is not None:
        firmware = sysfs / "devices" / "platform" / "soc" / "soc:firmware"
        firmware.mkdir(parents=True)
        (firmware / "get_throttled").write_text(throttled)


def config(root: Path, **extra: str) -> str:
    lines = [
        "[log]",
        "flush_interval = 0.05",
        "[[sensors.system]]",
        'name = "health"',
        "interval = 0.05",
        f'proc_root = "{root / "proc"}"',
        f'sys_root = "{root / "sys"}"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def first_reading(agent: AgentHarness) -> dict[str, Any]:
    return agent.wait_for_readings("readings/health")[0].values


def described_fields(agent: AgentHarness) -> dict[str, Any]:
    return agent.fields("readings/health")


def test_a_pi_reports_every_field(tmp_path: Path) -> None:
    fake_pi(tmp_path / "root")
    text = config(tmp_path / "root", vcgencmd='""')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        values = first_reading(agent)
        fields = described_fields(agent)
    assert values["cpu_temperature"] == 48.3  # via gpiozero's CPUTemperature, 0.1 °C
    assert (values["load_1"], values["load_5"], values["load_15"]) == (0.67, 0.59, 0.5)
    assert values["memory_available"] == round(706952 * 1024 / MIB)
    assert values["memory_total"] == round(929440 * 1024 / MIB)
    assert values["uptime"] == 350735
    assert abs(values["disk_total"] - shutil.disk_usage(tmp_path).total / MIB) <= 1
    assert 0 <= values["disk_free"] <= values["disk_total"]
    # 0x50005: under-voltage and throttling, now and since boot
    assert values["undervoltage"] is True and values["undervoltage_since_boot"] is True
    assert values["throttled"] is True and values["throttled_since_boot"] is True
    assert values["frequency_capped"] is False and values["soft_temp_limit"] is False
    assert values["throttle_bits"] == 0x50005
    assert fields["cpu_temperature"] == {
        "unit": "°C",
        "resolution": 0.1,
        "device_class": "temperature",
    }
    assert fields["memory_available"]["unit"] == "MiB"
    assert fields["undervoltage"] == {"device_class": "problem"}


def test_throttle_flags_come_from_vcgencmd_without_sysfs(tmp_path: Path) -> None:
    fake_pi(tmp_path / "root", throttled=None)
    script = tmp_path / "vcgencmd"
    script.write_text('#!/bin/sh\n[ "$1" = get_throttled ] || exit 2\necho "throttled=0x80008"\n')
    script.chmod(0o755)
    text = config(tmp_path / "root", vcgencmd=f'"{script}"')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        values = first_reading(agent)
    assert values["soft_temp_limit"] is True and values["soft_temp_limit_since_boot"] is True
    assert values["undervoltage"] is False and values["throttle_bits"] == 0x80008


def test_absent_sources_are_left_out_not_errors(tmp_path: Path) -> None:
    fake_pi(tmp_path / "root", thermal=False, throttled=None)
    text = config(tmp_path / "root", vcgencmd='""')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        values = first_reading(agent)
        fields = described_fields(agent)
        assert agent.status()["sensors"][0]["last_error"] is None
    for absent in ("cpu_temperature", "undervoltage", "throttle_bits"):
        assert absent not in values and absent not in fields
    assert {"load_1", "memory_available", "disk_free", "uptime"} <= set(values)


def test_cpu_temperature_without_gpiozero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # `import gpiozero` now fails
    fake_pi(tmp_path / "root")
    (tmp_path / "root/sys/class/thermal/thermal_zone0/temp").write_text("61234\n")
    text = config(tmp_path / "root", vcgencmd='""')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        assert first_reading(agent)["cpu_temperature"] == 61.2


def test_a_source_that_fails_is_skipped_until_it_works_again(tmp_path: Path) -> None:
    fake_pi(tmp_path / "root")
    loadavg = tmp_path / "root" / "proc" / "loadavg"
    text = config(tmp_path / "root", vcgencmd='""')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        first_reading(agent)
        loadavg.unlink()
        seen = len(agent.readings("readings/health"))
        agent.wait_for(
            lambda: any("load_1" not in r.values for r in agent.readings("readings/health")[seen:])
        )
        loadavg.write_text("2.00 1.00 0.50 3/140 20000\n")
        agent.wait_for(lambda: agent.readings("readings/health")[-1].values.get("load_1") == 2.0)
        assert agent.status()["sensors"][0]["restarts"] == 0
    assert all("memory_total" in r.values for r in agent.readings("readings/health"))


def test_disk_path_is_configurable(tmp_path: Path) -> None:
    fake_pi(tmp_path / "root")
    (tmp_path / "data").mkdir()
    text = config(tmp_path / "root", vcgencmd='""', disk_path=f'"{tmp_path / "data"}"')
    with AgentHarness(text, tmp_path / "home", pin_factory=MockFactory()) as agent:
        values = first_reading(agent)
    assert abs(values["disk_total"] - shutil.disk_usage(tmp_path / "data").total / MIB) <= 1


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="no procfs on this machine")
def test_this_machines_real_proc_and_sys(tmp_path: Path) -> None:
    text = '[log]\nflush_interval = 0.05\n[[sensors.system]]\nname = "health"\ninterval = 0.05\n'
    with AgentHarness(text, tmp_path, pin_factory=MockFactory()) as agent:
        values = first_reading(agent)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MIB
    assert abs(values["memory_total"] - physical) < 0.1 * physical
    assert 0 < values["memory_available"] <= values["memory_total"]
    assert all(values[k] >= 0 for k in ("load_1", "load_5", "load_15"))
    assert values["uptime"] > 0 and 0 <= values["disk_free"] <= values["disk_total"]
    has_thermal = Path("/sys/class/thermal/thermal_zone0/temp").exists()
    assert ("cpu_temperature" in values) == has_thermal
    if has_thermal:
        assert -40 < values["cpu_temperature"] < 125
