"""lichen.toml: every error names the file, the key, the bad value and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.board import list_boards, load_board, render_starter_config
from agent.config import load_config, parse_config
from agent.errors import ConfigError
from agent.runtime.configure import configure_sensors


def test_defaults() -> None:
    config = parse_config("")
    assert config.log.flush_interval == 1.0 and config.log.durability == "normal"
    assert config.log.max_entry_size == 16384 and config.node.role == "board"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            '[log]\ndurability = "fsync"\n',
            ["lichen.toml", "[log] durability", "'fsync'", "must be one of", "Fix:"],
        ),
        ("[log]\nflush_interval = 0\n", ["[log] flush_interval", "at least 0.01"]),
        ('[log]\nflush_interval = "1s"\n', ["[log] flush_interval", "'1s'", "must be a number"]),
        ("[log]\nmax_entry_size = 99999999\n", ["[log] max_entry_size", "at most 1048576"]),
        (
            "[log]\nflush_intervall = 2\n",
            ["unknown key", "flush_intervall", 'did you mean "flush_interval"'],
        ),
        ("[nodes]\nname = 'x'\n", ["unknown table", "[nodes]"]),
        ('[node]\nrole = "relay"\n', ["[node] role", "'relay'", "'board', 'mule', 'cloud'"]),
        ("[log\n", ["not valid TOML"]),
        ("sensors = 3\n", ["[sensors] must hold"]),
        ("[sensors]\nsim = 3\n", ["[sensors.sim]", "must be a table"]),
    ],
)
def test_bad_values_are_named_with_a_fix(text: str, parts: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "lichen.toml")
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_an_unreadable_cloud_tls_file_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ca.chmod(0)
    if os.geteuid() == 0:  # root reads every file: ask as if this were the cloud's user
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"\[cloud\] tls_ca = '.*ca.pem': .*not readable"):
        parse_config(f'[cloud]\ntls_ca = "{ca}"\n', "lichen.toml")


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lichen init"):
        load_config(tmp_path / "lichen.toml")


def test_plugin_tables_are_checked_against_the_plugin_schema() -> None:
    config = parse_config('[[sensors.sim]]\nname = "a"\nkind = "sun"\n', "x.toml")
    with pytest.raises(ConfigError) as info:
        configure_sensors(config)
    assert '[[sensors.sim]] "a" kind' in str(info.value) and "'sun'" in str(info.value)
    config = parse_config("[[sensors.sim]]\nkind = 'door'\n", "x.toml")
    with pytest.raises(ConfigError, match=r"\[\[sensors.sim\]\] #1 name: is required"):
        configure_sensors(config)
    config = parse_config("[[sensors.sim]]\nname = 'a'\nintervall = 1\n", "x.toml")
    with pytest.raises(ConfigError, match='did you mean "interval"'):
        configure_sensors(config)


def test_unknown_plugin_and_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"no sensor plugin named 'simm'.*did you mean \"sim\""):
        configure_sensors(parse_config("[[sensors.simm]]\nname = 'a'\n"))
    twice = "[[sensors.sim]]\nname = 'a'\n[[sensors.sim]]\nname = 'a'\nkind = 'door'\n"
    with pytest.raises(ConfigError, match=r"#2 name = 'a': writes collection 'readings/a', as"):
        configure_sensors(parse_config(twice))
    with pytest.raises(ConfigError, match="collection"):
        configure_sensors(parse_config("[[sensors.sim]]\nname = 'a b'\n"))


@pytest.mark.parametrize("board", list_boards())
def test_every_board_gives_a_starter_config_that_loads(board: str) -> None:
    profile = load_board(board)
    text = render_starter_config(profile, "node-1", "lc1example")
    config = parse_config(text, "lichen.toml")
    assert config.node.board == board and config.node.name == "node-1"
    configure_sensors(config)  # every default sensor exists and is valid


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown board 'rpi-9'.*rpi-zero-2w"):
        load_board("rpi-9")
