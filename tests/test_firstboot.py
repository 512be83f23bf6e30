"""`lichen firstboot`: a lichen.toml (and a fleet invite) on the boot partition —
a temporary directory here — becomes the node's configuration, checked before
anything is consumed, and leaves no secret behind on the partition. Real
`lichen` processes on real homes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.identity import Identity, save_identity
from agent.store.log_store import Draft, LogStore

from .conftest import run_lichen

SECRET = "s3cret-broker-password"
CONFIG = f"""\
[node]
name = "greenhouse-1"
board = "sim"

[[sensors.sim]]
name = "climate"
kind = "climate"

[[uplinks.mqtt]]
name = "cloud"
broker = "mqtts://broker.example:8883"
username = "board"
password = "{SECRET}"
"""


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    directory = tmp_path / "boot-firmware"
    directory.mkdir()
    return directory


def firstboot(home: Path, boot: Path, check: bool = True):
    return run_lichen("firstboot", "--boot-dir", str(boot), home=home, check=check)


@pytest.mark.slow
def test_a_valid_file_makes_the_node_and_is_consumed(tmp_path: Path, boot: Path):
    home = tmp_path / "home"
    (boot / "lichen.toml").write_text(CONFIG)
    (boot / "lichen-invite.txt").write_text("lichen-invite:v1:abcdef\n")
    twin = tmp_path / "twin"  # a second name for the same bytes on the partition
    os.link(boot / "lichen.toml", twin)
    result = firstboot(home, boot)
    assert "node initialised from the boot partition" in result.stdout
    node = run_lichen("id", home=home).stdout.strip()
    config = (home / "lichen.toml").read_text()
    assert config.splitlines()[0].endswith(f"({node}), from the boot partition.")
    assert config.split("\n", 1)[1] == CONFIG
    assert oct((home / "lichen.toml").stat().st_mode & 0o777) == "0o600"
    # consumed: gone from the partition, and its bytes zeroed where they lay
    assert sorted(p.name for p in boot.iterdir()) == ["lichen-firstboot.txt"]
    assert twin.read_bytes() == b"\0" * len(CONFIG.encode())
    report = (boot / "lichen-firstboot.txt").read_text()
    assert node in report and "fleet invite: carried, pending" in report
    assert SECRET not in report
    # the invite is carried, private, and reported as pending
    pending = home / "state" / "fleet-invite.pending"
    assert pending.read_text() == "lichen-invite:v1:abcdef\n"
    assert oct(pending.stat().st_mode & 0o777) == "0o600"
    status = json.loads(run_lichen("status", "--json", home=home).stdout)
    assert status["fleet_invite"] == "pending" and status["name"] == "greenhouse-1"
    assert "an invite from the boot partition is pending" in run_lichen("status", home=home).stdout
    # picked up once: the next boot finds nothing to do
    assert "nothing on the boot partition" in firstboot(home, boot).stdout


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.replace('board = "sim"', 'board = "rpi-9"'), "[node] board"),
        (lambda t: t.replace('kind = "climate"', 'kind = "weather"'), "kind"),
        (lambda t: t.replace("[[sensors.sim]]", "[[sensors.nosuchplugin]]"), "nosuchplugin"),
        (lambda t: t.replace('username = "board"\n', ""), "username"),
        (lambda t: t + "\n[node\n", "not valid TOML"),
    ],
)
@pytest.mark.slow
def test_an_invalid_file_is_renamed_with_the_reason_and_nothing_changes(
    tmp_path: Path, boot: Path, change, reason: str
):
    home = tmp_path / "home"
    bad = change(CONFIG)
    (boot / "lichen.toml").write_text(bad)
    (boot / "lichen-invite.txt").write_text("invite")
    result = firstboot(home, boot, check=False)
    assert result.returncode == 2
    assert "lichen.toml refused" in result.stderr and reason in result.stderr
    assert not home.exists()  # not half-initialised: not even created
    assert (boot / "lichen.toml.invalid").read_text() == bad
    explanation = (boot / "lichen.toml.invalid.txt").read_text()
    assert reason in explanation and "nothing on this node was changed" in explanation
    assert (boot / "lichen-invite.txt").exists()  # no node to carry it for: left in place
    assert not (boot / "lichen.toml").exists()  # the next boot does not try it again
    assert "nothing on the boot partition" not in firstboot(home, boot).stdout  # invite waits


@pytest.mark.slow
def test_an_existing_node_keeps_its_identity_and_gets_the_new_configuration(
    tmp_path: Path, boot: Path
):
    home = tmp_path / "home"
    run_lichen("init", "--board", "sim", "--name", "before", home=home)
    node = run_lichen("id", home=home).stdout.strip()
    old = (home / "lichen.toml").read_text()
    (boot / "lichen.toml").write_text(CONFIG)
    assert "configuration replaced" in firstboot(home, boot).stdout
    assert run_lichen("id", home=home).stdout.strip() == node
    assert (home / "lichen.toml.previous").read_text() == old
    assert json.loads(run_lichen("status", "--json", home=home).stdout)["name"] == "greenhouse-1"
    assert not (boot / "lichen.toml").exists()


def test_a_power_cut_after_the_key_is_finished_by_the_next_boot(tmp_path: Path, boot: Path):
    """The key was written, the configuration not, the file is still on the card."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    save_identity(Identity.generate(), home / "identity.key")
    (boot / "lichen.toml").write_text(CONFIG)
    firstboot(home, boot)
    assert (home / "lichen.toml").read_text().endswith(CONFIG)
    assert (home / "log.db").exists() and not (boot / "lichen.toml").exists()


def test_a_home_whose_key_is_lost_leaves_the_files_on_the_card(tmp_path: Path, boot: Path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    identity = Identity.generate()
    with LogStore(home / "log.db") as store:
        from agent.clock import HybridClock

        store.append(identity, HybridClock(), [Draft("notes", {"n": 1})])
    (boot / "lichen.toml").write_text(CONFIG)
    result = firstboot(home, boot, check=False)
    assert result.returncode == 1 and "left in place" in result.stderr
    assert "identity.key is missing" in result.stderr
    assert (boot / "lichen.toml").read_text() == CONFIG
    assert not (home / "identity.key").exists()


def test_the_first_boot_dir_with_a_file_wins(tmp_path: Path, boot: Path):
    empty = tmp_path / "firmware-empty"
    empty.mkdir()
    (boot / "lichen.toml").write_text(CONFIG)
    home = tmp_path / "home"
    run_lichen("firstboot", "--boot-dir", str(empty), "--boot-dir", str(boot), home=home)
    assert (home / "identity.key").exists()
