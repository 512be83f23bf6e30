"""``lichen doctor``: check what this board needs, naming each fix."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import Config, load_config
from ..errors import ConfigError
from .common import current_home, home_option, json_option, print_json

__all__ = ["doctor_command"]

_MARKS = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "--"}


@click.command("doctor")
@home_option
@json_option
@click.option(
    "--sysroot",
    metavar="DIR",
    envvar="LICHEN_SYSROOT",
    default="/",
    show_default=True,
    help="Read /proc, /sys, /dev, /boot and /etc under DIR (env LICHEN_SYSROOT).",
)
def doctor_command(as_json: bool, sysroot: str) -> None:
    """Check what this board needs for its configuration: the board profile
    against the hardware, the extras the configured plugins import, the GPIO
    pin factory, the buses (I²C, SPI, UART, 1-Wire) enabled, the clock, the
    disk, the radios and the service. Each problem comes with its fix.

    Exit code 0 when nothing failed (warnings allowed), 1 when a check failed.
    """
    from ..doctor import Doctor

    home = current_home()
    config: Config | None = None
    error: str | None = None
    if home.config.exists():
        try:
            config = load_config(home.config)
        except ConfigError as exc:
            error = str(exc)
    else:
        error = f"no lichen.toml in {home.path}. Fix: lichen --home {home.path} init --board BOARD"
    doctor = Doctor(root=Path(sysroot), home=home.path, config=config, config_error=error)
    checks = doctor.run()
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        print_json(
            {
                "ok": not failed,
                "board": doctor.board.name,
                "sysroot": sysroot,
                "home": str(home.path),
                "checks": [c.as_json() for c in checks],
            }
        )
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            click.echo(f"{_MARKS[check.status]:4}  {check.name:{width}}  {check.detail}")
            if check.fix and check.status in ("fail", "warn"):
                click.echo(f"{'':4}  {'':{width}}  fix: {check.fix}")
        warned = sum(c.status == "warn" for c in checks)
        click.echo(
            f"{len(failed)} problem{'s' if len(failed) != 1 else ''}, "
            f"{warned} warning{'s' if warned != 1 else ''}"
        )
    if failed:
        sys.exit(1)
