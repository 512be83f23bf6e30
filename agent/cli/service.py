"""``lichen service install|remove|status``: the agent as a systemd service."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import click

from ..errors import ConfigError, LichenError
from ..service import (
    DEVICE_GROUPS,
    FIRSTBOOT_UNIT,
    SERVICE_UNIT,
    STATE_ROOT,
    ServiceSpec,
    Systemd,
    executable_path,
    interpreter_of,
    render_firstboot,
    render_service,
)
from .common import LichenGroup, home_option, json_option, print_json

__all__ = ["DRY_RUN_HEADER", "firstboot_command", "service_group"]

DEFAULT_HOME = STATE_ROOT / "lichen"
#: the line before each unit --dry-run prints (a comment to systemd)
DRY_RUN_HEADER = "### "
_SHOWN = (
    "LoadState",
    "UnitFileState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "NRestarts",
    "StatusText",
    "WatchdogUSec",
    "ExecMainStartTimestamp",
    "ConditionResult",
    "FragmentPath",
)


@click.group("service", cls=LichenGroup)
def service_group() -> None:
    """The agent as a systemd service: install, remove, status.

    \b
    sudo lichen service install --now     write, enable and start lichen.service
    lichen service install --dry-run      print the unit, change nothing
    lichen service status                 is it running, restarts, last status line
    journalctl -u lichen -p err           its errors
    """


def _home() -> PurePosixPath:
    """``--home`` when given (here or before ``service``), else /var/lib/lichen;
    ``$LICHEN_HOME`` of whoever runs the installer is not the service's."""
    chosen = click.get_current_context().find_root().ensure_object(dict).get("home")
    return PurePosixPath(Path(chosen).absolute()) if chosen else DEFAULT_HOME


def _executable() -> PurePosixPath:
    """The ``lichen`` command of this installation (next to its interpreter)."""
    beside = Path(sys.executable).with_name("lichen")
    if beside.is_file() and os.access(beside, os.X_OK):
        return executable_path(beside)
    argv0 = Path(sys.argv[0])
    if argv0.name == "lichen" and argv0.is_file():
        return executable_path(argv0)
    raise LichenError(
        f"cannot find the lichen command next to {sys.executable}. Fix: install Lichen into "
        "a virtual environment (python3 -m venv /opt/lichen; /opt/lichen/bin/pip install "
        "lichen) and run /opt/lichen/bin/lichen service install"
    )


def _existing_groups() -> tuple[str, ...]:
    found = []
    for name in DEVICE_GROUPS:
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        found.append(name)
    return tuple(found)


def _spec(user: str | None, watchdog: int) -> ServiceSpec:
    executable = _executable()
    return ServiceSpec(
        executable=executable,
        interpreter=interpreter_of(Path(executable)),
        home=_home(),
        user=user,
        groups=_existing_groups(),
        watchdog_s=watchdog,
    )


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LichenError(
            f"{what} changes /etc/systemd/system and needs root. Fix: sudo {sys.argv[0]} "
            f"service {what.rsplit(maxsplit=1)[-1]} (or --dry-run to print the unit)"
        )


def _prepare_home(spec: ServiceSpec) -> None:
    """A home outside /var/lib is made (0700) and given to ``--user``; one under
    /var/lib is systemd's to make and own (StateDirectory=)."""
    if spec.state_directory is not None or spec.user is None:
        return
    home = Path(spec.home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    entry = pwd.getpwnam(spec.user)
    if home.stat().st_uid != entry.pw_uid:
        os.chown(home, entry.pw_uid, entry.pw_gid)
        click.echo(f"home         {home} given to {spec.user}")


@service_group.command("install")
@home_option
@click.option(
    "--user",
    metavar="NAME",
    help="Run as this existing system user (default: a dynamic user systemd creates; "
    "the home must then be under /var/lib).",
)
@click.option("--dry-run", is_flag=True, help="Print the units and change nothing.")
@click.option("--now", "start", is_flag=True, help="Also start (or restart) the service.")
@click.option(
    "--watchdog",
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="WatchdogSec=: restart the agent when its loop is stuck this long.",
)
@click.option("--force", is_flag=True, help="Replace a unit file not written by lichen.")
def install_command(
    user: str | None, dry_run: bool, start: bool, watchdog: int, force: bool
) -> None:
    """Write and enable lichen.service (safe to run again: an unchanged unit is
    left alone, a changed one replaced and systemd reloaded)."""
    spec = _spec(user, watchdog)
    units = {SERVICE_UNIT: render_service(spec), FIRSTBOOT_UNIT: render_firstboot(spec)}
    if dry_run:
        for name, text in units.items():
            click.echo(f"{DRY_RUN_HEADER}{Systemd().unit_path(name)}")
            click.echo(text, nl=False)
        return
    systemd = Systemd()
    systemd.check()
    _need_root("service install")
    for path in spec.in_homes():
        click.echo(
            f"warning: {path} is under a user's home: the service sees it read-only, and a "
            "dynamic user cannot enter a home that is 0700. Fix: a virtual environment made "
            "with the system's Python in /opt/lichen (docs/install.md)",
            err=True,
        )
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise LichenError(
                f"user {user!r} does not exist. Fix: sudo useradd --system --home-dir "
                f"{spec.home} --shell /usr/sbin/nologin {user}, or leave out --user for a "
                "dynamic user"
            ) from None
    _prepare_home(spec)
    changed = False
    for name, text in units.items():
        written = systemd.write_unit(name, text, force=force)
        changed |= written.changed
        state = "written" if written.changed else "unchanged"
        click.echo(f"unit         {written.path} ({state})")
    if changed:
        systemd.systemctl("daemon-reload")
    systemd.systemctl("enable", "--quiet", SERVICE_UNIT, FIRSTBOOT_UNIT)
    click.echo(f"enabled      {SERVICE_UNIT} starts at boot, after {FIRSTBOOT_UNIT}")
    click.echo(f"home         {spec.home}")
    click.echo(f"runs as      {spec.user or 'a dynamic user (DynamicUser=yes)'}")
    if spec.groups:
        click.echo(f"groups       {' '.join(spec.groups)}")
    if start:
        systemd.systemctl("start", FIRSTBOOT_UNIT)  # skipped unless a boot file waits
        systemd.systemctl("restart" if changed else "start", SERVICE_UNIT)
        click.echo(f"started      {SERVICE_UNIT}")
    if not Path(spec.home, "identity.key").exists():
        click.echo(
            f"not a node yet: the service starts once {spec.home} is initialised. Fix: put "
            f"a lichen.toml on the boot partition and reboot, or sudo {spec.executable} "
            f"--home {spec.home} init --board BOARD --name NAME"
        )
    click.echo(f"logs         journalctl -u {SERVICE_UNIT.removesuffix('.service')} -f")


@service_group.command("remove")
@click.option("--force", is_flag=True, help="Remove unit files not written by lichen too.")
def remove_command(force: bool) -> None:
    """Stop, disable and delete lichen.service and lichen-firstboot.service. The
    node's home (its key and log) is kept."""
    systemd = Systemd()
    systemd.check()
    _need_root("service remove")
    names = [n for n in (SERVICE_UNIT, FIRSTBOOT_UNIT) if systemd.ours(n) is not None]
    if not names:
        click.echo(f"{SERVICE_UNIT} is not installed; nothing to do")
        return
    for name in names:  # refuse before changing anything
        if not systemd.ours(name) and not force:
            systemd.remove_unit(name)
    systemd.systemctl("disable", "--now", "--quiet", *names, check=False)
    for name in names:
        systemd.remove_unit(name, force=force)
        click.echo(f"removed      {systemd.unit_path(name)} (stopped and disabled)")
    systemd.systemctl("daemon-reload")
    systemd.systemctl("reset-failed", *names, check=False)
    click.echo(
        "kept         the node's home (its identity.key and log); delete it yourself if "
        "the node is retired"
    )


@service_group.command("status")
@json_option
def status_command(as_json: bool) -> None:
    """Whether lichen.service is installed, running, and how often it restarted."""
    systemd = Systemd()
    state = systemd.show(SERVICE_UNIT, *_SHOWN)
    installed = state.get("LoadState") == "loaded"
    if as_json:
        print_json(_as_json(state))
    elif not installed:
        click.echo(f"{SERVICE_UNIT} is not installed. Fix: sudo lichen service install --now")
    else:
        _echo(state)
    if not installed:
        sys.exit(3)  # like `systemctl status` for a unit that is not there


def _as_json(state: dict[str, str]) -> dict[str, Any]:
    value: dict[str, Any] = dict(state)
    for key in ("MainPID", "NRestarts", "WatchdogUSec"):
        if value.get(key, "").isdigit():
            value[key] = int(value[key])
    return value


def _echo(state: dict[str, str]) -> None:
    active = f"{state.get('ActiveState')} ({state.get('SubState')})"
    if state.get("ConditionResult") == "no":
        active += ", skipped: the home is not initialised"
    click.echo(f"unit         {state.get('FragmentPath')}  {state.get('UnitFileState')}")
    click.echo(f"state        {active}, result {state.get('Result')}")
    if state.get("MainPID", "0") != "0":
        click.echo(f"pid          {state['MainPID']} since {state.get('ExecMainStartTimestamp')}")
    click.echo(f"restarts     {state.get('NRestarts', '0')}")
    if state.get("StatusText"):
        click.echo(f"status       {state['StatusText']}")
    click.echo(f"logs         journalctl -u {SERVICE_UNIT.removesuffix('.service')} -p err")


@click.command("firstboot")
@home_option
@click.option(
    "--boot-dir",
    "boot_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Where the boot partition is (repeatable; default /boot/firmware, then /boot).",
)
def firstboot_command(boot_dirs: tuple[Path, ...]) -> None:
    """Pick up lichen.toml (and lichen-invite.txt) from the boot partition: checked,
    the node initialised or reconfigured, the file consumed (run by
    lichen-firstboot.service before the agent). An invalid file is renamed
    lichen.toml.invalid with the reason beside it, and nothing is changed."""
    from ..logs import event, setup_logging
    from ..service.firstboot import BOOT_DIRS, FirstBoot, find_boot_dir
    from .common import current_home

    setup_logging("info")
    log = logging.getLogger("lichen.firstboot")
    boot_dir = find_boot_dir(tuple(boot_dirs) or BOOT_DIRS)
    if boot_dir is None:
        event(log, "nothing on the boot partition", looked_in=",".join(
            str(d) for d in (boot_dirs or BOOT_DIRS)))  # fmt: skip
        return
    result = FirstBoot(current_home(), boot_dir).run()
    if result.consumed:
        event(log, "boot partition picked up", node=result.node_id,
              consumed=",".join(p.name for p in result.consumed),
              invite="pending" if result.invite_pending else "none")  # fmt: skip
    if result.refused:
        names = ", ".join(str(p) for p in result.refused)
        raise ConfigError(
            f"{names} refused (renamed *.invalid, the reason in *.invalid.txt beside it): "
            + "; ".join(result.refused.values())
        )
