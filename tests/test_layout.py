"""The plugin folder contract: every built-in plugin ships code, sample.toml,
README.md and tests, and is registered through entry points like any other."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.plugin_api import SensorConfig, TransportConfig, UplinkConfig
from agent.plugins import available, configure_plugin, load_plugin
from agent.runtime.configure import configure_sensors

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


def test_every_agent_package_is_in_the_wheel() -> None:
    """A package folder missing from [tool.setuptools] packages installs from a
    checkout but is absent from the wheel (lichen then fails at import)."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "agent").rglob("__init__.py")
        if "tests" not in init.parts and "__pycache__" not in init.parts
    }
    missing = sorted(found - listed)
    assert not missing, f"packages missing from pyproject.toml: {missing}"


#: "# key = value   # comment" and "# [[sensors.x]]": the lines a user uncomments
SETTING = re.compile(r"^# (\[\[sensors\.\w+\]\]|\w+ = .*)$")


def uncommented(sample: Path) -> str:
    lines = sample.read_text().splitlines()
    return "\n".join(m.group(1) if (m := SETTING.match(line)) else line for line in lines)


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
@pytest.mark.parametrize("commented", [False, True], ids=["as-is", "uncommented"])
def test_sample_config_is_valid(folder: Path, commented: bool) -> None:
    """Every sample configures, as shipped and with every commented key switched
    on — on the simulated board's 40-pin header, so pins are checked too."""
    from gpiozero.pins.mock import MockFactory

    from agent.board import load_board
    from agent.hardware import Hardware

    sample = folder / "sample.toml"
    text = uncommented(sample) if commented else sample.read_text()
    config = parse_config(text, str(sample))
    hardware = Hardware(load_board("sim"), pin_factory=MockFactory())
    if config.plugins.get("sensors"):
        assert configure_sensors(config, hardware)
    for group in ("transports", "uplinks"):
        for plugin, index, table in config.instances(group):
            assert configure_plugin(group, plugin, index, table, str(sample))
    if commented:
        assert config.plugins, f"{sample} configures nothing, even uncommented"


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_sample_shows_every_key_with_its_real_default(folder: Path) -> None:
    """The sample is the reference (as Telegraf's sample.conf): every key of every
    plugin it configures appears in it, commented or not, and where a key first
    appears it shows the plugin's real default. The keys every instance has may
    be shown once for the whole file."""
    text = uncommented(folder / "sample.toml")
    data = tomllib.loads(text)
    groups: list[tuple[str, type[Any], dict[str, list[dict[str, Any]]]]] = [
        (group, base, data[group])
        for group, base in (
            ("sensors", SensorConfig),
            ("transports", TransportConfig),
            ("uplinks", UplinkConfig),
        )
        if group in data
    ]
    assert groups, f"{folder.name}/sample.toml configures no plugin"
    for group, base, tables in groups:
        _check_sample_defaults(folder, text, group, base, tables)


def _check_sample_defaults(
    folder: Path, text: str, group: str, base: type[Any], tables: dict[str, list[dict[str, Any]]]
) -> None:
    common = {f.name for f in dataclasses.fields(base)}
    for plugin, instances in tables.items():
        config_class = load_plugin(group, plugin).Config
        shown: dict[str, Any] = {}
        for table in instances:  # first appearance wins; later tables are examples
            shown = {**table, **shown}
        for f in dataclasses.fields(config_class):
            if f.name not in shown:
                assert f.name in common and re.search(rf"\b{f.name} = ", text), (
                    f"{folder.name}/sample.toml: [[{group}.{plugin}]] never shows {f.name!r}"
                )
                continue
            if f.name in ("name", "collection"):
                continue
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            if default is dataclasses.MISSING or default is None or default in ([], {}):
                continue  # required, or nothing by default: the sample shows an example
            assert shown[f.name] == default, (
                f"{plugin}.{f.name}: the sample shows {shown[f.name]!r}, the default is {default!r}"
            )


def test_every_registered_plugin_is_installed_and_is_a_sensor() -> None:
    from agent.plugin_api import Sensor

    registered = PYPROJECT["project"]["entry-points"]["lichen.sensors"]
    installed = available("sensors")
    for name, target in registered.items():
        assert name in installed and installed[name].value == target
        assert issubclass(load_plugin("sensors", name), Sensor)


def test_the_plugin_guide_lists_exactly_the_built_in_plugins() -> None:
    """docs/plugins.md's table names every built-in plugin folder and entry point,
    and no other; it claims a BLE transport exactly when one is registered."""
    guide = (ROOT / "docs" / "plugins.md").read_text("utf-8")
    table = guide.split("## The built-in plugins", 1)[1]
    rows = re.findall(r"^\| `(lichen_\w+)` \| (.+?) \|", table, re.MULTILINE)
    assert sorted(folder for folder, _ in rows) == [p.name for p in PLUGINS]
    listed = {name for _, points in rows for name in re.findall(r"`(\w+)`", points)}
    registered = {name for group in PYPROJECT["project"]["entry-points"].values() for name in group}
    assert listed == registered
    text = guide.replace("\n", " ")
    if "ble" in PYPROJECT["project"]["entry-points"]["lichen.transports"]:
        assert "no BLE transport" not in text
    else:  # the guide must not claim one
        assert not re.search(r"built-in[^.]*\bBLE\b", text) and "no BLE transport" in text


def test_plugins_use_only_the_public_api() -> None:
    public = {
        "agent",
        "agent.plugin_api",
        "agent.readings",
        "agent.errors",
        "agent.transport",
        "agent.uplink.wire",  # the board ⇄ cloud wire contract, shared with the cloud role
        "agent.mqtt",  # the MQTT layer, shared with the cloud role
        "agent.sansio",  # NEED_DATA and the protocol-core convention
        "agent.http_stream",  # HTTP on a transport's stream: the mule exchange over BLE
    }
    for folder in PLUGINS:
        for source in folder.rglob("*.py"):
            if "tests" in source.parts:
                continue
            for line in source.read_text().splitlines():
                if line.startswith(("from agent", "import agent")):
                    module = line.split()[1]
                    assert module in public, f"{source}: imports private {module}"


def test_import_contracts_know_every_plugin() -> None:
    """The import contracts (``make lint``) see every built-in plugin, and forbid the
    core to import any of them: a new plugin cannot be left out."""
    linter = PYPROJECT["tool"]["importlinter"]
    names = [p.name for p in PLUGINS]
    assert sorted(linter["root_packages"]) == sorted(["agent", *names])
    (core,) = [c for c in linter["contracts"] if c["id"] == "core-without-plugins"]
    assert core["source_modules"] == ["agent"]
    assert sorted(core["forbidden_modules"]) == names
