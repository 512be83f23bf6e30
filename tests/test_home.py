"""A node's home as people meet it, through the real CLI: a lost key next to a
log is never "fixed" by making a new node over the old log; the home, the
configuration and the log are private to the node's user."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.store.log_store import LogStore

from .conftest import run_lichen
from .helpers.agent_process import running_agent


def entries(database: Path) -> int:
    with LogStore(database) as store:
        return store.totals()[0]


@pytest.mark.slow
def test_a_lost_key_next_to_a_log_is_refused_with_the_way_to_restore_it(home: Path) -> None:
    old_id = run_lichen("id", home=home).stdout.strip()
    for i in range(3):
        run_lichen("log", "append", "notes", json.dumps({"i": i}), home=home)
    (home / "identity.key").unlink()
    log_before = (home / "log.db").read_bytes()

    for args in (["init"], ["init", "--board", "sim"], ["run"], ["status"]):
        result = run_lichen(*args, home=home, check=False, timeout=30)
        assert result.returncode == 1, (args, result.stderr)
        message = result.stderr
        assert "identity.key" in message and "3 entries" in message, message
        assert "restore" in message and "backup" in message, message
        assert "--new-identity" in message and old_id in message, message
        assert "Traceback" not in message
        assert not (home / "identity.key").exists()  # nothing was made
    assert (home / "log.db").read_bytes() == log_before
    assert entries(home / "log.db") == 3


@pytest.mark.slow
def test_a_new_identity_only_when_asked_and_the_old_log_is_kept_aside(home: Path) -> None:
    old_id = run_lichen("id", home=home).stdout.strip()
    for i in range(3):
        run_lichen("log", "append", "notes", json.dumps({"i": i}), home=home)
    (home / "identity.key").unlink()

    made = run_lichen("init", "--new-identity", home=home)
    new_id = run_lichen("id", home=home).stdout.strip()
    assert new_id != old_id and new_id in made.stdout
    orphans = sorted(home.glob("log.db.orphan-*"))
    main_files = [p for p in orphans if not p.name.endswith(("-wal", "-shm"))]
    assert len(main_files) == 1 and main_files[0].name in made.stdout, made.stdout
    assert old_id in made.stdout  # says whose log was moved aside
    # the old node's feed is whole in the file moved aside; the new log starts empty
    assert entries(main_files[0]) == 3
    status = json.loads(run_lichen("status", "--json", home=home).stdout)
    assert status["node_id"] == new_id and status["entries"] == 0 and status["feeds"] == []
    run_lichen("log", "append", "notes", '"after"', home=home)
    assert [
        f["author"] for f in json.loads(run_lichen("status", "--json", home=home).stdout)["feeds"]
    ] == [new_id]

    # asked by name, still never over a key that exists
    again = run_lichen("init", "--new-identity", home=home, check=False)
    assert again.returncode == 1 and "already node" in again.stderr
    assert run_lichen("id", home=home).stdout.strip() == new_id


def test_a_lost_key_next_to_an_empty_log_is_simply_made_again(tmp_path: Path) -> None:
    home = tmp_path / "node"
    run_lichen("init", "--board", "generic", home=home)
    (home / "identity.key").unlink()
    made = run_lichen("init", home=home)  # nothing was written: nothing to mix
    assert "node id" in made.stdout and (home / "identity.key").exists()
    assert not list(home.glob("log.db.orphan-*"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_a_new_home_is_private_and_so_are_its_config_and_log(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask: files 0644, directories 0755
    try:
        home = tmp_path / "node"
        run_lichen("init", "--board", "generic", home=home)
        assert mode(home) == 0o700
        assert mode(home / "lichen.toml") == 0o600 and mode(home / "log.db") == 0o600
        assert mode(home / "identity.key") == 0o600
        with running_agent(home) as agent:
            agent.wait_for(lambda: (home / "log.db-wal").exists() and agent.status())
            for name in ("log.db", "log.db-wal", "log.db-shm"):
                assert mode(home / name) == 0o600, name
            assert agent.stop() == 0
    finally:
        os.umask(previous)


@pytest.mark.slow
def test_an_existing_home_with_loose_modes_is_tightened_at_start(home: Path) -> None:
    home.chmod(0o755)
    (home / "lichen.toml").chmod(0o644)
    (home / "log.db").chmod(0o664)
    with running_agent(home) as agent:
        agent.wait_for(agent.status)
        assert agent.stop() == 0
    assert mode(home) == 0o700
    assert mode(home / "lichen.toml") == 0o600 and mode(home / "log.db") == 0o600
    lines = [line for line in agent.log().splitlines() if "permissions tightened" in line]
    assert len(lines) == 3, agent.log()
    assert all("level=info" in line for line in lines)
    assert any(f"path={home / 'log.db'}" in line and "was=0664" in line for line in lines)


@pytest.mark.slow
def test_a_password_over_plain_mqtt_is_warned_about_and_over_tls_it_is_not(home: Path) -> None:
    config = home / "lichen.toml"
    base = config.read_text()
    plain = '[[uplinks.mqtt]]\nname = "cloud"\nbroker = "mqtt://127.0.0.1:1"\n'
    config.write_text(base + "\n" + plain + 'username = "board"\npassword = "hunter2"\n')
    with running_agent(home) as agent:
        agent.wait_for(agent.status)
        assert agent.stop() == 0
    warnings = [line for line in agent.log().splitlines() if "in the clear" in line]
    assert len(warnings) == 1 and "level=warning" in warnings[0], agent.log()
    assert "mqtt://127.0.0.1:1" in warnings[0] and "mqtts://" in warnings[0]
    assert "hunter2" not in agent.log()

    config.write_text(base + "\n" + plain)  # no password: nothing to warn about
    with running_agent(home) as agent:
        agent.wait_for(agent.status)
        assert agent.stop() == 0
    assert "in the clear" not in agent.log()
