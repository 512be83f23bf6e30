"""The plugin folder contract: every built-in plugin ships code, sample.toml,
README.md and tests, and is registered through entry points like any other."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.plugins import available
from agent.runtime.agent import configure_sensors

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if p.name.startswith("lichen_"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_there_are_built_in_plugins() -> None:
    assert PLUGINS


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_plugin_folder_has_code_sample_readme_and_tests(folder: Path) -> None:
    assert (folder / "__init__.py").is_file()
    assert (folder / "sample.toml").is_file(), f"{folder.name} lacks sample.toml"
    readme = folder / "README.md"
    assert readme.is_file() and len(readme.read_text()) > 200, f"{folder.name} lacks a README"
    tests = list((folder / "tests").glob("test_*.py"))
    assert tests, f"{folder.name} has no tests"


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_plugin_is_packaged_and_registered(folder: Path) -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert folder.name in setuptools["packages"]
    assert setuptools["package-dir"][folder.name] == f"plugins/{folder.name}"
    assert folder.name in setuptools["package-data"]
    groups = PYPROJECT["project"]["entry-points"]
    targets = [v for g in groups.values() for v in g.values()]
    assert any(t.split(":")[0] == folder.name for t in targets), f"{folder.name} is not registered"


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_sample_config_is_valid(folder: Path) -> None:
    config = parse_config((folder / "sample.toml").read_text(), str(folder / "sample.toml"))
    if config.plugins.get("sensors"):
        assert configure_sensors(config)


def test_entry_points_are_installed() -> None:
    assert "sim" in available("sensors")


def test_plugins_use_only_the_public_api() -> None:
    public = {"agent", "agent.plugin_api", "agent.readings", "agent.errors"}
    for folder in PLUGINS:
        for source in folder.rglob("*.py"):
            if "tests" in source.parts:
                continue
            for line in source.read_text().splitlines():
                if line.startswith(("from agent", "import agent")):
                    module = line.split()[1]
                    assert module in public, f"{source}: imports private {module}"
