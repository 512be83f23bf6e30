"""The plugin author's kit: scaffold a third-party plugin, pip-install it, run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import LICHEN, run_lichen

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


@pytest.mark.slow
def test_a_scaffolded_plugin_installs_runs_and_writes_to_the_log(
    tmp_path: Path, home: Path
) -> None:
    out = run_lichen("plugins", "new", "demo_sensor", "--dir", str(tmp_path)).stdout
    project = tmp_path / "lichen-demo-sensor"
    assert "DemoSensor" in out and (project / "pyproject.toml").is_file()
    subprocess.run(
        [*PIP, "install", "--no-build-isolation", "--no-deps", "-e", str(project)], check=True
    )
    try:
        # the scaffold passes its own tests out of the box
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert tests.returncode == 0, tests.stdout + tests.stderr
        listed = json.loads(run_lichen("plugins", "list", "--json", home=home).stdout)
        demo = [p for p in listed["sensors"] if p["name"] == "demo_sensor"]
        assert demo and demo[0]["target"] == "demo_sensor:DemoSensor" and demo[0]["instances"] == []

        config = home / "lichen.toml"
        config.write_text(
            config.read_text() + '\n[[sensors.demo_sensor]]\nname = "tank"\ninterval = 0.05\n'
        )
        config.write_text(
            config.read_text().replace("flush_interval = 1.0", "flush_interval = 0.1")
        )
        agent = subprocess.Popen(
            [str(LICHEN), "--home", str(home), "run"], stdout=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            lines: list[str] = []
            while time.monotonic() < deadline and not lines:
                time.sleep(0.2)
                lines = run_lichen(
                    "log", "tail", "readings/tank", "--json", home=home
                ).stdout.splitlines()
            assert lines, "no readings from the scaffolded plugin"
            entry = json.loads(lines[-1])
            assert entry["readings"] and "level" in entry["readings"][0]
            assert entry["units"] == {"level": "mm"}
            deadline = time.monotonic() + 30
            human = ""
            while time.monotonic() < deadline and "'tank'  running" not in human:
                time.sleep(0.2)
                human = run_lichen("plugins", "list", home=home).stdout
            assert "[[sensors.demo_sensor]] name = 'tank'  running" in human
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
    finally:
        subprocess.run([*PIP, "uninstall", "-y", "lichen-demo-sensor"], check=False)
    assert "demo_sensor:DemoSensor" not in run_lichen("plugins", "list", home=home).stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Demo", "lowercase"),
        ("1abc", "starting with a letter"),
        ("class", "lowercase"),
        ("sim", "already installed"),
    ],
)
@pytest.mark.slow
def test_plugins_new_refuses_bad_names(tmp_path: Path, name: str, message: str) -> None:
    result = run_lichen("plugins", "new", name, "--dir", str(tmp_path), check=False)
    assert result.returncode == 1 and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plugins_new_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "lichen-soil").mkdir()
    result = run_lichen("plugins", "new", "soil", "--dir", str(tmp_path), check=False)
    assert result.returncode == 1 and "already exists" in result.stderr


@pytest.mark.slow
def test_plugins_list_flags_configured_but_missing_plugins(home: Path) -> None:
    config = home / "lichen.toml"
    config.write_text(config.read_text() + '\n[[sensors.nonesuch]]\nname = "x"\n')
    out = run_lichen("plugins", "list", home=home).stdout
    assert "[[sensors.nonesuch]] is configured but no such plugin is installed" in out
    assert json.loads(run_lichen("plugins", "list", "--json", home=home).stdout)[
        "configured_but_missing"
    ] == ["sensors.nonesuch"]
    assert os.environ.get("LICHEN_HOME") is None
