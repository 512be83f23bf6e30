"""A bad ``[[sensors.*]]`` table in lichen.toml: the error names the table the
operator wrote — by its name, or by its position when it has none — whichever
check found the problem: the core's schema, the plugin's own check across keys
(raised with a bare key), or the check that no two instances write one collection.

Each configuration is loaded from a file and configured as ``lichen run`` does it
(:func:`~agent.runtime.configure.configure_sensors` on the board's hardware), and
``lichen doctor``'s configuration check must report the very same text."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config, parse_config
from agent.doctor import Doctor
from agent.errors import ConfigError
from agent.plugins import configure_links
from agent.runtime.configure import configure_sensors, hardware_for
from agent.schema import build, instance_label, setting
from agent.sensor_api import SensorConfig

from .conftest import run_lichen

BOARD = '[node]\nname = "field-1"\nboard = "sim"\n[gpio]\npin_factory = "mock"\n'
NAME_FIX = (
    'the instance name, e.g. name = "greenhouse"; readings go to collection "readings/<name>"'
)
HOLD = "hold_repeat: hold_repeat = true needs a hold_time. Fix: set hold_time, e.g. hold_time = 2.0"
CLASH_FIX = "Fix: give each [[sensors.*]] table its own name (or collection)"


def refused(tmp_path: Path, tables: str) -> str:
    """The error ``lichen run`` stops with, checked against ``lichen doctor``'s, with
    the file's path (which starts it) taken off."""
    path = tmp_path / "lichen.toml"
    path.write_text(BOARD + tables)
    config = load_config(path)
    with pytest.raises(ConfigError) as caught:
        configure_sensors(config, hardware_for(config))
    message = str(caught.value)
    checks = Doctor(root=tmp_path / "root", home=tmp_path, config=config).check_config()
    assert [(c.status, c.detail) for c in checks] == [("fail", message)]
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        pytest.param(
            '[[sensors.gpio_input]]\nname = "window"\npin = 17\n'
            '[[sensors.gpio_input]]\nname = "door"\npin = 27\ninterval = 0\n',
            '[[sensors.gpio_input]] "door" interval = 0: must be at least 0.001. '
            "Fix: seconds between samples, e.g. 1.0",
            id="core key, by name",
        ),
        pytest.param(
            '[[sensors.gpio_input]]\nname = "window"\npin = 17\n[[sensors.gpio_input]]\npin = 27\n',
            f"[[sensors.gpio_input]] #2 name: is required. Fix: {NAME_FIX}",
            id="core key, no name: by position",
        ),
        pytest.param(
            '[[sensors.gpio_input]]\nname = "window"\npin = 17\n'
            "[[sensors.gpio_input]]\nname = 5\npin = 27\n",
            f"[[sensors.gpio_input]] #2 name = 5: must be text, not int. Fix: {NAME_FIX}",
            id="core key, a name that is no text: by position",
        ),
        pytest.param(
            '[[sensors.gpio_button]]\nname = "door"\npin = 27\nhold_repeat = true\n',
            f'[[sensors.gpio_button]] "door" {HOLD}',
            id="gpio check across keys, by name",
        ),
        pytest.param(
            '[[sensors.gpio_button]]\nname = "bell"\npin = 17\n'
            '[[sensors.gpio_button]]\nname = ""\npin = 27\nhold_repeat = true\n',
            f"[[sensors.gpio_button]] #2 {HOLD}",
            id="gpio check across keys, empty name: by position",
        ),
        pytest.param(
            '[[sensors.gpio_adc]]\nname = "soil"\nchannels = [1, 1]\n',
            '[[sensors.gpio_adc]] "soil" channels: a channel is listed twice. '
            "Fix: list each channel once",
            id="adc check across keys",
        ),
        pytest.param(
            '[[sensors.bme280]]\nname = "weather"\naddress = 0x44\n',
            "[[sensors.bme280]] \"weather\" address = '0x44': is not an address this chip "
            "answers on. Fix: address = 0x76 or 0x77",
            id="i2c check across keys",
        ),
        pytest.param(
            '[[sensors.onewire]]\nname = "tank"\nnames = { "28-bad" = "top" }\n',
            "[[sensors.onewire]] \"tank\" names: '28-bad' is not a probe id. "
            'Fix: e.g. "28-0316a2795aff"',
            id="onewire check across keys",
        ),
        pytest.param(
            '[[sensors.gpio_input]]\nname = "door"\npin = 17\n'
            '[[sensors.gpio_button]]\nname = "door"\npin = 27\n',
            "[[sensors.gpio_input]] \"door\" name = 'door': writes collection 'readings/door', "
            f'as [[sensors.gpio_button]] "door" does. {CLASH_FIX}',
            id="collection clash, two plugins: by name",
        ),
        pytest.param(
            '[[sensors.sim]]\nname = "a"\n[[sensors.sim]]\nname = "b"\n'
            '[[sensors.sim]]\nname = "a"\nkind = "door"\n',
            "[[sensors.sim]] #3 name = 'a': writes collection 'readings/a', "
            f"as [[sensors.sim]] #1 does. {CLASH_FIX}",
            id="collection clash, one plugin, one name: by position",
        ),
        pytest.param(
            '[[sensors.sim]]\nname = "a"\ncollection = "events/x"\n'
            '[[sensors.sim]]\nname = "b"\ncollection = "events/x"\n',
            "[[sensors.sim]] \"b\" collection = 'events/x': writes collection 'events/x', "
            f'as [[sensors.sim]] "a" does. {CLASH_FIX}',
            id="collection clash through the collection key",
        ),
        pytest.param(
            '[[sensors.sim]]\nname = "a"\ncollection = "x y"\n',
            "[[sensors.sim]] \"a\" collection: collection 'x y' may only hold letters, digits "
            "and _ . : - in segments separated by single '/'",
            id="a bad collection names the collection key",
        ),
    ],
)
def test_the_error_names_the_table_as_written(tmp_path: Path, tables: str, expected: str) -> None:
    assert refused(tmp_path, tables) == expected


def test_a_pin_clash_names_the_table_once() -> None:
    config = parse_config(
        BOARD + '[[sensors.gpio_input]]\nname = "door"\npin = 17\n'
        '[[sensors.gpio_button]]\nname = "bell"\npin = 17\n',
        "lichen.toml",
    )
    with pytest.raises(ConfigError) as caught:
        configure_sensors(config, hardware_for(config))
    assert str(caught.value) == (
        "lichen.toml: [[sensors.gpio_input]] \"door\": GPIO17 on board 'sim' is already "
        "used by 'bell'"
    )


def test_names_are_quoted_as_toml_writes_them() -> None:
    assert instance_label("sensors", "sim", 0, "door") == '[[sensors.sim]] "door"'
    assert instance_label("sensors", "sim", 1, 'say "hi"\\') == '[[sensors.sim]] "say \\"hi\\"\\\\"'
    assert instance_label("sensors", "sim", 1, "tür") == '[[sensors.sim]] "tür"'
    for not_a_name in (None, "", 5, ["a"]):
        assert instance_label("uplinks", "mqtt", 2, not_a_name) == "[[uplinks.mqtt]] #3"


@dataclass(frozen=True, kw_only=True)
class Probe:
    dry: float = setting(3.1, help="volts when dry")
    wet: float = setting(1.2, help="volts in water")
    key: str = setting("wet", help="the key the check names")

    def __post_init__(self) -> None:
        if self.wet >= self.dry:
            raise ConfigError(f"is not below dry ({self.dry})", key=self.key or None, fix="…")


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("wet", '[[sensors.probe]] "bed" wet'),  # bare: the table in front
        ("[[sensors.probe]] 'bed' wet", "[[sensors.probe]] 'bed' wet"),  # labelled: as raised
        ("", '[[sensors.probe]] "bed"'),  # none: the table
    ],
)
def test_a_check_across_keys_gets_the_table_label(key: str, shown: str) -> None:
    table = instance_label("sensors", "probe", 0, "bed")
    with pytest.raises(ConfigError) as caught:
        build(Probe, {"wet": 4.0, "key": key}, table=table, file="lichen.toml")
    assert str(caught.value) == f"lichen.toml: {shown}: is not below dry (3.1). Fix: …"
    assert (caught.value.file, caught.value.key) == ("lichen.toml", shown)


def test_links_are_named_the_same_way() -> None:
    mqtt = '[[uplinks.mqtt]]\nname = "cloud"\nbroker = "mqtt://broker.lan"\n'
    bad = parse_config(mqtt + "reconnect_min = 5.0\nreconnect_max = 2.0\n", "lichen.toml")
    with pytest.raises(ConfigError) as caught:
        configure_links(bad)
    assert str(caught.value) == (
        'lichen.toml: [[uplinks.mqtt]] "cloud" reconnect_max = 2.0: is below reconnect_min '
        "(5.0). Fix: reconnect_max = 120.0"
    )
    tcp = '[[transports.tcp]]\nname = "lan"\nport = {}\n'
    twice = parse_config(tcp.format(7401) + tcp.format(7402), "lichen.toml")
    with pytest.raises(ConfigError) as caught:
        configure_links(twice)
    assert str(caught.value) == (
        "lichen.toml: [[transports.tcp]] #2 name = 'lan': is also the name of "
        "[[transports.tcp]] #1. Fix: give each [[transports.*]] table its own name"
    )


def test_the_guides_check_across_keys_prints_what_the_guide_shows() -> None:
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text("utf-8")
    section = guide.split("A rule **across keys**", 1)[1]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.DOTALL)[:2]
    namespace: dict[str, Any] = {"dataclass": dataclass, "SensorConfig": SensorConfig}
    namespace["setting"] = setting
    exec(compile(textwrap.dedent(code), "docs/plugins.md", "exec"), namespace)
    table = instance_label("sensors", "soil_probe", 0, "bed-2")
    with pytest.raises(ConfigError) as caught:
        build(namespace["SoilProbeConfig"], {"name": "bed-2", "wet": 3.5}, table=table,
              file="lichen.toml")  # fmt: skip
    assert f"lichen: configuration error: {caught.value}" == " ".join(shown.split())


@pytest.mark.slow
def test_lichen_run_and_doctor_print_it(tmp_path: Path) -> None:
    home = tmp_path / "node"
    run_lichen("init", "--board", "sim", "--name", "field-1", home=home)
    path = home / "lichen.toml"
    with path.open("a") as f:
        f.write('\n[[sensors.gpio_button]]\nname = "door"\npin = 27\nhold_repeat = true\n')
    expected = f'{path}: [[sensors.gpio_button]] "door" {HOLD}'
    started = run_lichen("run", home=home, check=False)
    assert (started.returncode, started.stderr) == (2, f"lichen: configuration error: {expected}\n")
    root = str(tmp_path / "root")
    checked = run_lichen("doctor", "--json", "--sysroot", root, home=home, check=False)
    assert checked.returncode == 1
    config = [c for c in json.loads(checked.stdout)["checks"] if c["name"] == "config"]
    assert [(c["status"], c["detail"]) for c in config] == [("fail", expected)]
