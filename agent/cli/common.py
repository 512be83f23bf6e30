"""Shared CLI plumbing: the home option, opening things, error handling."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ..clock import HybridClock
from ..config import Config, load_config
from ..errors import ConfigError, IdentityError, LichenError
from ..home import Home, lost_identity
from ..identity import Identity, load_identity
from ..store.log_store import LogStore

__all__ = [
    "LichenGroup",
    "agent_status",
    "home_option",
    "json_option",
    "open_node",
    "open_store",
    "option_value",
    "parse_when",
    "print_json",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class LichenGroup(click.Group):
    """A click group that turns :class:`LichenError` into a one-line message.

    Exit codes: 0 success, 1 failure (including faults found), 2 usage or
    configuration error.

    The root group also offers the commands plugins register in the entry-point
    group ``lichen.commands`` (``ble = "lichen_ble.cli:ble_group"`` makes
    ``lichen ble …``); a plugin's module is imported only when its command runs
    (or ``--help`` lists it), so the core never imports a plugin it does not use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        if ctx.parent is None:
            names |= set(_plugin_commands())
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or ctx.parent is not None:
            return command
        entry = _plugin_commands().get(cmd_name)
        if entry is None:
            return None
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not break the whole CLI
            raise click.ClickException(
                f"the {cmd_name!r} command of {entry.dist} ({entry.value}) failed to load: {exc}"
            ) from exc
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"{entry.value} is not a click command")
        return loaded

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            _fail(f"lichen: configuration error: {exc}", 2)
        except LichenError as exc:
            _fail(f"lichen: error: {exc}", 1)


def _fail(message: str, code: int) -> NoReturn:
    """The one line a failed command leaves on stderr (at priority "err" when
    stderr is the journal, so `journalctl -p err` shows why a service stopped)."""
    from ..logs import is_journal, journal_priority

    prefix = f"<{journal_priority(logging.ERROR)}>" if is_journal(sys.stderr) else ""
    click.echo(prefix + message, err=True)
    sys.exit(code)


def _plugin_commands() -> dict[str, Any]:
    from ..plugins import available

    return available("commands")


def _set_home(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["home"] = value


def home_option(f: F) -> F:
    """``--home DIR`` on a command (the group has it too; the innermost wins)."""
    return click.option(
        "--home",
        metavar="DIR",
        expose_value=False,
        callback=_set_home,
        is_eager=True,
        help="The node's home directory (env LICHEN_HOME).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")(f)


def current_home() -> Home:
    ctx = click.get_current_context()
    return Home.resolve(ctx.find_root().ensure_object(dict).get("home"))


def open_node(home: Home | None = None) -> tuple[Home, Config, Identity]:
    """Load the configuration and identity of the current home (clear errors)."""
    home = home or current_home()
    if not home.identity.exists() and not home.config.exists():
        raise LichenError(f"{home.path} is not a Lichen home. Fix: lichen --home {home.path} init")
    lost = lost_identity(home)
    if lost is not None:
        raise IdentityError(lost)
    return home, load_config(home.config), load_identity(home.identity)


def open_store(home: Home, config: Config | None = None) -> LogStore:
    if config is None:
        config = load_config(home.config) if home.config.exists() else Config()
    if not home.database.exists():
        raise LichenError(f"{home.database}: no log yet. Fix: lichen --home {home.path} init")
    return LogStore(
        home.database, durability=config.log.durability, max_entry_size=config.log.max_entry_size
    )


def node_clock(store: LogStore, identity: Identity) -> HybridClock:
    clock = HybridClock()
    head = store.head(identity.node_id.key)
    if head is not None:
        clock.observe(head.ts)
    return clock


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False))


def agent_status(path: Path) -> dict[str, Any] | None:
    """The running agent's snapshot (with ``age_s`` and ``stale``), or None if no
    agent runs for this home."""
    from ..status import read_status

    return read_status(path)


def option_value(parse: Callable[[str], T], text: str | None, option: str) -> T | None:
    """``parse(text)``, None when the option was not given; the ``ValueError``
    of a bad value is a ``click.BadParameter`` naming ``option``."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def parse_when(text: str, option: str, *, also: str = "") -> int:
    """``12h`` / ``7d`` (that long ago) or a date (``2026-12-01``,
    ``2026-12-01T08:00Z``; without a zone, local time) → ms since the epoch;
    ``click.BadParameter`` naming ``option`` (``also``: other forms it takes)."""
    import time
    from datetime import datetime

    from ..uplink.config import parse_duration

    try:
        return int((time.time() - parse_duration(text)) * 1000)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither {also}a duration (12h, 7d) nor a date "
            "(2026-12-01 or 2026-12-01T08:00Z)",
            param_hint=option,
        ) from None
