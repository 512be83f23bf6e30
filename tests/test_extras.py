"""First use without the extras: `pip install lichen` alone has no paho-mqtt,
cryptography nor psycopg. Each command that needs one says which extra to
install and exits non-zero, instead of a traceback or a silent uplink.

Each case is a real child interpreter running the `lichen` command line with
the module hidden by a meta-path blocker (what Python sees when a package is
not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_lichen

pytestmark = pytest.mark.slow

BLOCKER = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
BLOCKED = set(sys.argv[1].split(","))
for loaded in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
    del sys.modules[loaded]
sys.meta_path.insert(0, Missing())
sys.argv = ["lichen", *sys.argv[2:]]
from agent.cli import main
main()
"""


def without(modules: str, *args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lichen ARGS…`` in a child interpreter where ``modules`` are not installed."""
    env = dict(os.environ)
    env.pop("LICHEN_HOME", None)
    if home is not None:
        env["LICHEN_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, modules, *args],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip


def assert_names_the_extra(result: subprocess.CompletedProcess[str], extra: str) -> None:
    assert result.returncode != 0, result
    assert f"pip install 'lichen[{extra}]'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_an_uplink_without_paho_says_which_extra_to_install(tmp_path: Path) -> None:
    home = tmp_path / "board"
    run_lichen("init", "--board", "generic", "--name", "b", home=home)
    # before, the agent ran on and the uplink never said a word
    assert_names_the_extra(without("paho", "run", "--uplink", "mqtt://127.0.0.1:1", home=home),
                           "mqtt")  # fmt: skip
    with (home / "lichen.toml").open("a") as config:
        config.write('\n[[uplinks.mqtt]]\nname = "cloud"\nbroker = "mqtt://127.0.0.1:1"\n')
    result = without("paho", "run", home=home)
    assert_names_the_extra(result, "mqtt")
    assert "mqtt uplink" in result.stderr


def test_the_cloud_without_its_extras_says_which_to_install(tmp_path: Path) -> None:
    home = tmp_path / "cloud"
    result = without("paho", "cloud", home=home)
    assert_names_the_extra(result, "cloud")
    assert not home.exists()  # nothing was created for a role that cannot run
    result = without("psycopg", "cloud", "--postgres", "dbname=x", "--http", "off", home=home)
    assert_names_the_extra(result, "postgres")


def test_certificates_without_cryptography_say_which_extra_to_install(tmp_path: Path) -> None:
    result = without("cryptography", "cloud-cert", "ca", "--out", str(tmp_path / "ca"))
    assert_names_the_extra(result, "mqtt")
    run_lichen("cloud-cert", "ca", "--out", str(tmp_path / "ca"))
    result = without("cryptography", "cloud-cert", "client", "--ca", str(tmp_path / "ca"),
                     "--out", str(tmp_path / "c"), "--name", "x")  # fmt: skip
    assert_names_the_extra(result, "mqtt")
