"""`lichen service`: the unit it renders passes `systemd-analyze verify` (and the
check would catch a bad one), the choices that depend on where things live, and
the refusals: no systemd, a unit someone else wrote, a home a dynamic user
cannot own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from agent.errors import LichenError
from agent.service import (
    MARKER,
    ServiceSpec,
    Systemd,
    SystemdMissing,
    interpreter_of,
    render_service,
)

from .conftest import LICHEN, run_lichen

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze missing (scripts/system-deps.sh test installs it)"
)


def dry_run(*args: str) -> dict[str, str]:
    """`lichen service install --dry-run ARGS`: each unit it prints, by file name."""
    out = run_lichen("service", "install", "--dry-run", *args).stdout
    units: dict[str, str] = {}
    name = None
    for line in out.splitlines(keepends=True):
        if line.startswith("### /etc/systemd/system/"):
            name = line.strip().rsplit("/", 1)[1]
            units[name] = ""
        else:
            assert name is not None, out
            units[name] += line
    return units


def verify(text: str, directory: Path, name: str = "lichen.service") -> list[str]:
    """`systemd-analyze verify` on ``text`` as the unit ``name``: its complaints
    about the file (it exits 0 on unknown keys, so its output is the verdict)."""
    directory.mkdir(parents=True, exist_ok=True)
    if name != "lichen.service":  # the unit it is ordered before
        (directory / "lichen.service").write_text(dry_run()["lichen.service"])
    unit = directory / name
    unit.write_text(text)
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SYSTEMD_LOG_COLOR="0"),
    )
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "lichen" in ln]
    if result.returncode != 0:
        lines.append(f"exit {result.returncode}")
    return lines


@needs_analyze
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--watchdog", "30"],
        ["--user", "lichen", "--home", "/srv/lichen"],
        ["--user", "pi", "--home", "/home/pi/lichen"],
    ],
)
@pytest.mark.slow
def test_rendered_unit_verifies(tmp_path: Path, args: list[str]):
    units = dry_run(*args)
    assert set(units) == {"lichen.service", "lichen-firstboot.service"}
    text = units["lichen.service"]
    for name, unit in units.items():
        assert unit.startswith(MARKER)
        assert verify(unit, tmp_path / "unit", name) == []
    firstboot = units["lichen-firstboot.service"]
    assert f"ExecStart={LICHEN} firstboot" in firstboot and "Before=lichen.service" in firstboot
    assert "ConditionPathExists=|/boot/firmware/lichen.toml" in firstboot
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=always",
        "AF_BLUETOOTH",
        "AF_NETLINK",
    ):
        assert needed in text
    assert f"ExecStart={LICHEN} run" in text


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path):
    """The check above can fail: a misspelt key, a command that is not there."""
    text = dry_run()["lichen.service"]
    assert verify(text.replace("Restart=always", "Restrat=always"), tmp_path / "a")
    broken = text.replace(str(LICHEN), "/nonexistent/lichen")
    assert verify(broken, tmp_path / "b")


def test_dynamic_user_or_named_user():
    exe = PurePosixPath("/opt/lichen/bin/lichen")
    dynamic = render_service(ServiceSpec(executable=exe))
    assert "DynamicUser=yes" in dynamic and "StateDirectory=lichen" in dynamic
    assert "Environment=LICHEN_HOME=/var/lib/lichen" in dynamic
    assert "ConditionPathExists=/var/lib/lichen/identity.key" in dynamic
    named = render_service(
        ServiceSpec(executable=exe, user="lichen", home=PurePosixPath("/srv/lichen"))
    )
    assert "User=lichen" in named and "DynamicUser" not in named
    assert "ReadWritePaths=/srv/lichen" in named and "StateDirectory" not in named
    grouped = render_service(ServiceSpec(executable=exe, groups=("gpio", "i2c")))
    assert "SupplementaryGroups=gpio i2c" in grouped


def test_protect_home_is_read_only_for_a_venv_in_a_home():
    spec = ServiceSpec(executable=PurePosixPath("/home/pi/.venv/bin/lichen"))
    assert spec.protect_home == "read-only"
    assert ServiceSpec(executable=PurePosixPath("/opt/lichen/bin/lichen")).protect_home == "yes"
    assert ServiceSpec(executable=PurePosixPath("/homestead/bin/lichen")).protect_home == "yes"
    pyenv = ServiceSpec(
        executable=PurePosixPath("/opt/lichen/bin/lichen"),
        interpreter=PurePosixPath("/root/.pyenv/versions/3.11.7/bin/python3.11"),
    )
    assert pyenv.protect_home == "read-only"  # else the unit fails with 203/EXEC


def test_interpreter_is_read_from_the_shebang_with_symlinks_resolved(tmp_path: Path):
    python = tmp_path / "real-python"
    python.write_text("")
    (tmp_path / "venv-python").symlink_to(python)
    script = tmp_path / "lichen"
    script.write_text(f"#!{tmp_path / 'venv-python'}\nimport sys\n")
    assert interpreter_of(script) == PurePosixPath(python)
    (tmp_path / "binary").write_bytes(b"\x7fELF")
    assert interpreter_of(tmp_path / "binary") is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"home": PurePosixPath("/srv/lichen")}, "a dynamic user can own a home under /var/lib"),
        ({"executable": PurePosixPath("/opt/my lichen/bin/lichen")}, "no spaces"),
        ({"executable": PurePosixPath("/opt/$x/bin/lichen")}, "no spaces"),
        ({"user": "Bad User"}, "not a valid system user name"),
        ({"watchdog_s": 1}, "at least 4 s"),
    ],
)
def test_spec_refusals(kwargs: dict[str, object], expected: str):
    args: dict[str, object] = {"executable": PurePosixPath("/opt/lichen/bin/lichen"), **kwargs}
    with pytest.raises(LichenError, match=expected):
        ServiceSpec(**args)  # type: ignore[arg-type]


def test_no_systemd_is_refused_clearly(tmp_path: Path):
    systemd = Systemd(unit_dir=tmp_path / "units", runtime_dir=tmp_path / "run-systemd-system")
    with pytest.raises(SystemdMissing, match="systemd is not running here"):
        systemd.check()
    assert not (tmp_path / "units").exists()


@pytest.mark.skipif(
    Path("/run/systemd/system").is_dir(), reason="systemd runs here: install would install"
)
def test_install_without_systemd_exits_with_the_reason():
    result = run_lichen("service", "install", check=False)
    assert result.returncode == 1
    assert "systemd is not running here" in result.stderr and "--dry-run" in result.stderr
    assert not Path("/etc/systemd/system/lichen.service").exists()


def test_units_are_written_once_and_never_over_someone_elses(tmp_path: Path):
    systemd = Systemd(unit_dir=tmp_path)
    text = render_service(ServiceSpec(executable=PurePosixPath("/opt/lichen/bin/lichen")))
    assert systemd.write_unit("lichen.service", text).changed
    mtime = (tmp_path / "lichen.service").stat().st_mtime_ns
    assert not systemd.write_unit("lichen.service", text).changed  # idempotent
    assert (tmp_path / "lichen.service").stat().st_mtime_ns == mtime
    assert oct((tmp_path / "lichen.service").stat().st_mode & 0o777) == "0o644"
    assert systemd.write_unit("lichen.service", text.replace("60", "30")).changed
    (tmp_path / "other.service").write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(LichenError, match="not written by `lichen service install`"):
        systemd.write_unit("other.service", text)
    with pytest.raises(LichenError, match="--force"):
        systemd.remove_unit("other.service")
    assert (tmp_path / "other.service").read_text().startswith("[Service]")
    assert systemd.remove_unit("lichen.service") and not systemd.remove_unit("lichen.service")
