"""`make wheelhouse` (scripts/wheelhouse.sh): wheels of lichen and its board
extras, from which a fresh virtual environment installs with no index at all,
and the installed agent works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTRAS = "mqtt,gpio,i2c,serial,mdns"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_fresh_venv_installs_from_the_wheelhouse_offline(tmp_path: Path):
    wheelhouse = tmp_path / "wheelhouse"
    built = subprocess.run(
        [str(REPO / "scripts" / "wheelhouse.sh"), str(wheelhouse)],
        env=dict(os.environ, EXTRAS=EXTRAS, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "a fresh venv installs lichen[mqtt,gpio,i2c,serial,mdns] from it offline" in (
        built.stdout
    )
    names = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    for needed in ("lichen", "cbor2", "pynacl", "click", "rich", "h11", "paho_mqtt",
                   "cryptography", "gpiozero", "smbus2", "pyserial", "zeroconf"):  # fmt: skip
        assert needed in names, sorted(names)
    assert not names & {"bumble", "bleak", "psycopg", "pytest"}  # not a board's

    # our own check of the script's claim: another fresh venv, no index
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
         "--disable-pip-version-check", "--find-links", str(wheelhouse), f"lichen[{EXTRAS}]"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    lichen = venv / "bin" / "lichen"
    env = dict(os.environ, LICHEN_HOME=str(tmp_path / "home"))
    init = subprocess.run(
        [str(lichen), "init", "--board", "sim", "--name", "offline"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    plugins = subprocess.run(
        [str(lichen), "plugins", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert plugins.returncode == 0 and "mqtt" in plugins.stdout, plugins.stdout + plugins.stderr
