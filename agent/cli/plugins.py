"""``lichen plugins list`` and ``lichen plugins new NAME``."""

from __future__ import annotations

import keyword
import re
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

import click

from ..config import PLUGIN_GROUPS, Config, load_config
from ..errors import LichenError
from ..plugins import available
from .common import agent_status, current_home, home_option, json_option, print_json

__all__ = ["plugins_group"]

_NAME = re.compile(r"[a-z][a-z0-9_]{1,39}")


@click.group("plugins")
def plugins_group() -> None:
    """Installed and configured plugins; scaffold a new one."""


def _inventory() -> dict[str, Any]:
    home = current_home()
    config: Config | None = load_config(home.config) if home.config.exists() else None
    running = agent_status(home.status_file)
    states = {s["name"]: s for s in (running or {}).get("sensors", [])}
    out: dict[str, Any] = {"agent_running": running is not None}
    missing = []
    for group in PLUGIN_GROUPS:
        installed = available(group)
        configured: dict[str, list[dict[str, Any]]] = {}
        for plugin, _index, table in config.instances(group) if config else []:
            name = table.get("name", "?")
            instance: dict[str, Any] = {"name": name}
            state = states.get(name) if group == "sensors" else None
            if state:
                for key in (
                    "collection", "state", "stuck_in", "stuck_for_s", "readings", "restarts",
                    "refused", "last_refused", "sample_errors", "last_sample_error", "last_error",
                ):  # fmt: skip
                    instance[key] = state.get(key)
            configured.setdefault(plugin, []).append(instance)
            if plugin not in installed:
                missing.append(f"{group}.{plugin}")
        out[group] = [
            {
                "name": name,
                "distribution": entry.dist,
                "target": entry.value,
                "instances": configured.get(name, []),
            }
            for name, entry in sorted(installed.items())
        ]
    out["configured_but_missing"] = sorted(set(missing))
    return out


@plugins_group.command("list")
@home_option
@json_option
def list_command(as_json: bool) -> None:
    """What is installed, what this node configures, and how each instance runs."""
    inventory = _inventory()
    if as_json:
        print_json(inventory)
        return
    for group in PLUGIN_GROUPS:
        click.echo(group)
        if not inventory[group]:
            click.echo("  (none installed)")
        for plugin in inventory[group]:
            click.echo(f"  {plugin['name']:<15} {plugin['distribution']:<16} {plugin['target']}")
            for inst in plugin["instances"]:
                detail = ""
                if inst.get("state"):
                    detail = f"  {inst['state']}"
                    if inst.get("stuck_in"):
                        detail += f" in {inst['stuck_in']} for {inst['stuck_for_s']:.0f} s"
                    detail += f", {inst['readings']} readings"
                    detail += f", {inst['restarts']} restarts" if inst["restarts"] else ""
                    if inst.get("refused"):
                        detail += f", {inst['refused']} refused (last: {inst['last_refused']})"
                    if inst.get("sample_errors"):
                        detail += (
                            f", {inst['sample_errors']} failed samples"
                            f" (last: {inst['last_sample_error']})"
                        )
                    detail += f", last error: {inst['last_error']}" if inst["last_error"] else ""
                click.echo(f"      [[{group}.{plugin['name']}]] name = {inst['name']!r}{detail}")
    for item in inventory["configured_but_missing"]:
        click.echo(f"! [[{item}]] is configured but no such plugin is installed")
    if not inventory["agent_running"]:
        click.echo("(no agent running for this home: no run states)")


def _class_name(name: str) -> str:
    words = "".join(part.capitalize() for part in name.split("_"))
    return words if words.endswith("Sensor") else words + "Sensor"


@plugins_group.command("new")
@click.argument("name")
@click.option(
    "--dir", "directory", default=".", show_default=True, help="Where to create the project."
)
def new_command(name: str, directory: str) -> None:
    """Scaffold an installable third-party sensor plugin NAME that passes its own tests.

    \b
    lichen plugins new soil_probe
    cd lichen-soil-probe && pip install -e '.[test]' && pytest
    """
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise LichenError(
            f"plugin name {name!r}: use 2–40 lowercase letters, digits and _, "
            "starting with a letter (it becomes a Python package and the [[sensors.NAME]] key)"
        )
    if name in available("sensors"):
        raise LichenError(f"a sensor plugin named {name!r} is already installed; choose another")
    dist = "lichen-" + name.replace("_", "-")
    target = Path(directory) / dist
    if target.exists():
        raise LichenError(f"{target} already exists; nothing was written")
    values = {
        "name": name,
        "package": name,
        "dist": dist,
        "class_name": _class_name(name),
        "config_name": _class_name(name).removesuffix("Sensor") + "Config",
    }
    layout = {
        "pyproject.toml.tmpl": "pyproject.toml",
        "README.md.tmpl": "README.md",
        "__init__.py.tmpl": f"{name}/__init__.py",
        "sample.toml.tmpl": f"{name}/sample.toml",
        "test_plugin.py.tmpl": f"tests/test_{name}.py",
    }
    templates = files("agent") / "templates" / "plugin"
    for source, destination in layout.items():
        text = Template((templates / source).read_text("utf-8")).substitute(values)
        path = target / destination
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    click.echo(f"created {target}/ — the {values['class_name']} sensor plugin")
    click.echo(f"  cd {target} && pip install -e '.[test]' && pytest")
    click.echo(f"  then add [[sensors.{name}]] to lichen.toml (see {name}/sample.toml)")
