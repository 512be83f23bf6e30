"""The `lichen` command as people run it: real processes on real homes."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from .conftest import run_lichen


@pytest.mark.slow
def test_init_creates_a_private_identity_and_a_starter_config(tmp_path: Path) -> None:
    home = tmp_path / "n"
    out = run_lichen("--home", str(home), "init", "--board", "sim", "--name", "shed").stdout
    assert "node id      lc1" in out and "fingerprint" in out
    assert stat.S_IMODE((home / "identity.key").stat().st_mode) == 0o600
    assert 'name = "shed"' in (home / "lichen.toml").read_text()
    node_id = run_lichen("id", home=home).stdout.strip()
    assert node_id in out
    again = run_lichen("init", home=home, check=False)
    assert again.returncode == 1 and "already node" in again.stderr and node_id in again.stderr
    assert run_lichen("id", "--json", home=home).stdout.count(node_id) == 1


@pytest.mark.slow
def test_home_option_env_and_per_command_option_agree(tmp_path: Path, home: Path) -> None:
    by_env = run_lichen("id", home=home).stdout
    by_group = run_lichen("--home", str(home), "id").stdout
    by_command = run_lichen("id", "--home", str(home)).stdout
    assert by_env == by_group == by_command


@pytest.mark.slow
def test_append_tail_get_and_verify(home: Path) -> None:
    run_lichen("log", "append", "notes", '{"text": "pump replaced"}', home=home)
    run_lichen("log", "append", "config", '{"interval": 5}', "--id", "site", home=home)
    run_lichen("log", "append", "config", '{"interval": 10}', "--id", "site", home=home)
    tail = run_lichen("log", "tail", "--json", home=home).stdout.splitlines()
    entries = [json.loads(line) for line in tail]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["body"] == {"text": "pump replaced"} and entries[0]["collection"] == "notes"
    assert entries[2]["base"] == [entries[1]["hash"]] and entries[2]["prev"] == entries[1]["hash"]
    only = run_lichen("log", "tail", "notes", home=home).stdout
    assert "pump replaced" in only and "interval" not in only
    doc = json.loads(
        run_lichen("log", "get", "config", "site", "--json", "--history", home=home).stdout
    )
    assert doc["body"] == {"interval": 10} and doc["conflicts"] == [] and len(doc["history"]) == 2
    plain = run_lichen("log", "get", "config", "site", home=home)
    assert json.loads(plain.stdout) == {"interval": 10}
    verify = run_lichen("log", "verify", home=home)
    assert verify.stdout.startswith("ok: 3 entries in 1 feeds")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["log", "append", "notes", "{not json"], "BODY is not valid JSON"),
        (["log", "append", "_fleet", "{}"], "names starting with '_'"),
        (["log", "append", "bad name", "{}"], "collection 'bad name'"),
        (["log", "append", "notes", '"x"', "--id", ""], "document id"),
        (["log", "get", "config", "nope"], "no document 'nope'"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_refused_with_a_clear_message(
    home: Path, args: list[str], message: str
) -> None:
    result = run_lichen(*args, home=home, check=False)
    assert result.returncode == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(run_lichen("status", "--json", home=home).stdout)["entries"] == 0


@pytest.mark.slow
def test_tail_follow_prints_entries_as_they_arrive(home: Path) -> None:
    import subprocess

    from .conftest import LICHEN

    run_lichen("log", "append", "notes", '"before"', home=home)
    proc = subprocess.Popen(
        [str(LICHEN), "--home", str(home), "log", "tail", "-f", "--json", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline())["body"] == "before"  # type: ignore[union-attr]
        for word in ("one", "two"):
            run_lichen("log", "append", "notes", json.dumps(word), home=home)
            assert json.loads(proc.stdout.readline())["body"] == word  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_status_json_keys(home: Path) -> None:
    run_lichen("log", "append", "notes", '"hello"', home=home)
    status = json.loads(run_lichen("status", "--json", home=home).stdout)
    assert set(status) >= {
        "node_id",
        "fingerprint",
        "name",
        "role",
        "home",
        "entries",
        "bytes",
        "change",
        "collections",
        "feeds",
        "forks",
        "agent",
    }
    assert (
        status["entries"] == 1 and status["collections"] == {"notes": 1} and status["agent"] is None
    )
    (feed,) = status["feeds"]
    assert feed["own"] and feed["head_seq"] == 1 and feed["author"] == status["node_id"]
    assert set(feed) == {
        "author",
        "own",
        "head_seq",
        "head_hash",
        "head_time",
        "low_seq",
        "entries",
        "bytes",
    }
    human = run_lichen("status", home=home).stdout
    assert "1 entries" in human and "agent     not running" in human


@pytest.mark.slow
def test_a_flipped_bit_in_the_database_is_named_by_verify(home: Path) -> None:
    for i in range(5):
        run_lichen("log", "append", "notes", json.dumps({"i": i}), home=home)
    conn = sqlite3.connect(home / "log.db")
    (raw,) = conn.execute("SELECT raw FROM entries WHERE seq = 3").fetchone()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x04
    conn.execute("UPDATE entries SET raw = ? WHERE seq = 3", (bytes(flipped),))
    conn.commit()
    conn.close()
    result = run_lichen("log", "verify", home=home, check=False)
    assert result.returncode == 1
    assert "/3 (notes)" in result.stderr and "1 faults" in result.stdout
    report = json.loads(run_lichen("log", "verify", "--json", home=home, check=False).stdout)
    assert report["ok"] is False and [f["entry"].split("/")[1] for f in report["faults"]] == [
        "3 (notes)"
    ]


@pytest.mark.slow
def test_bad_config_stops_run_with_the_key_named(home: Path) -> None:
    config = home / "lichen.toml"
    config.write_text(
        config.read_text().replace('durability = "normal"', 'durability = "sometimes"')
    )
    result = run_lichen("run", home=home, check=False, timeout=30)
    assert result.returncode == 2
    assert "durability = 'sometimes'" in result.stderr and str(config) in result.stderr
    assert "Fix:" in result.stderr


@pytest.mark.slow
def test_a_world_readable_key_stops_every_command(home: Path) -> None:
    (home / "identity.key").chmod(0o644)
    for args in (["id"], ["status"], ["run"]):
        result = run_lichen(*args, home=home, check=False, timeout=30)
        assert result.returncode == 1 and "chmod 600" in result.stderr


def test_not_a_home(tmp_path: Path) -> None:
    result = run_lichen("status", home=tmp_path / "empty", check=False)
    assert (
        result.returncode == 1 and "not a Lichen home" in result.stderr and "init" in result.stderr
    )


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ('[[sensors.nosuch]]\nname = "x"\n', "no sensor plugin named 'nosuch'"),
        (
            '[[sensors.sim]]\nname = "a"\n\n[[sensors.sim]]\nname = "a"\n',
            "[[sensors.sim]] #2 name = 'a': writes collection 'readings/a', "
            "as [[sensors.sim]] #1 does",
        ),
        (
            '[[sensors.sim]]\nname = "a"\n\n'
            '[[sensors.sim]]\nname = "b"\ncollection = "readings/a"\n',
            """[[sensors.sim]] "b" collection = 'readings/a': writes collection 'readings/a', """
            """as [[sensors.sim]] "a" does""",
        ),
        ('[[transports.nosuch]]\nname = "t"\n', "no transport plugin named 'nosuch'"),
        ('[[uplinks.nosuch]]\nname = "u"\n', "no uplink plugin named 'nosuch'"),
        (
            '[[transports.tcp]]\nname = "t"\nport = 0\nlisten = false\n\n'
            '[[transports.tcp]]\nname = "t"\nport = 0\nlisten = false\n',
            "[[transports.tcp]] #2 name = 't': is also the name of [[transports.tcp]] #1",
        ),
    ],
)
@pytest.mark.slow
def test_every_configuration_error_exits_2_naming_the_table(
    home: Path, tables: str, message: str
) -> None:
    config = home / "lichen.toml"
    config.write_text(config.read_text() + "\n" + tables)
    result = run_lichen("run", home=home, check=False, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr and message in result.stderr, result.stderr
    assert str(config) in result.stderr and "Fix:" in result.stderr
    assert "Traceback" not in result.stderr
