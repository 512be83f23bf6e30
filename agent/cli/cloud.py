"""``lichen cloud``: run the cloud ingestion role in the current home."""

from __future__ import annotations

import asyncio
import os

import click

from ..aio import run_until_signalled
from ..errors import LichenError
from ..fsutil import atomic_write
from ..identity import Identity, save_identity
from ..store.log_store import LogStore
from .cloud_commands import command_group
from .common import current_home, home_option, open_node

__all__ = ["cloud_command"]


def _create_cloud_home(name: str | None) -> None:
    """Like ``lichen init``, for a cloud node: identity, starter config, empty log."""
    from ..config.cloud import starter_cloud_config

    home = current_home()
    home.path.mkdir(parents=True, exist_ok=True)
    identity = Identity.generate()
    save_identity(identity, home.identity)
    label = name or f"cloud-{os.uname().nodename}"
    if not home.config.exists():
        text = starter_cloud_config(label, str(identity.node_id))
        atomic_write(home.config, text.encode("utf-8"))
    LogStore(home.database).close()
    click.echo(f"node id      {identity.node_id}")
    click.echo(f"fingerprint  {identity.node_id.fingerprint}")
    click.echo(f"home         {home.path}")
    click.echo("role         cloud (a new identity)")
    line = _ack_from_line(str(identity.node_id))
    click.echo(f"boards       {line}  (in each board's lichen.toml)")


def _ack_from_line(node_id: str) -> str:
    """The line that makes a board take this cloud's acknowledgements."""
    return f'[retention] ack_from = ["{node_id}"]'


@click.group("cloud", invoke_without_command=True)
@home_option
@click.option("--broker", metavar="mqtt://HOST:PORT", help="MQTT broker ([cloud] broker).")
@click.option("--group", metavar="NAME", help="Shared subscription group ([cloud] group).")
@click.option(
    "--http",
    metavar="HOST:PORT",
    help='HTTP API address ([cloud] http); port 0 = any free port, "off" = none.',
)
@click.option(
    "--http-token",
    metavar="TOKEN",
    envvar="LICHEN_HTTP_TOKEN",
    help="Access token of the HTTP API ([cloud] http_token; env LICHEN_HTTP_TOKEN): "
    'requests need "Authorization: Bearer TOKEN". Required beyond loopback.',
)
@click.option(
    "--postgres",
    metavar="DSN",
    help="Store into PostgreSQL (sets [cloud] sink = postgres and postgres = DSN).",
)
@click.option("--name", help="A label for people, when this creates the home.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.pass_context
def cloud_command(
    ctx: click.Context,
    *,
    broker: str | None,
    group: str | None,
    http: str | None,
    http_token: str | None,
    postgres: str | None,
    name: str | None,
    log_level: str,
) -> None:
    """Run the cloud ingestion role: subscribe to every board's batches, verify,
    store exactly once, acknowledge, serve the HTTP API.

    \b
    lichen --home /srv/lichen-cloud cloud --broker mqtt://broker:1883
    lichen --home /srv/w1 cloud --postgres postgresql://lichen@db/lichen --group ingest

    Creates the home (identity, lichen.toml with role = "cloud") if it has none.
    Stops cleanly on SIGTERM/SIGINT. `lichen cloud command` sends boards signed,
    expiring commands."""
    if ctx.invoked_subcommand is not None:
        return
    from ..cloud.role import CloudRole, require_cloud_extras
    from ..config.cloud import apply_overrides
    from ..logs import setup_logging

    # before anything is created: a role that cannot run says what to install
    require_cloud_extras(postgres=postgres is not None)
    home = current_home()
    if not home.identity.exists():
        _create_cloud_home(name)
    home, config, identity = open_node(home)
    cloud = apply_overrides(
        config.cloud, broker=broker, group=group, http=http, http_token=http_token,
        postgres=postgres,
    )  # fmt: skip
    role = CloudRole(home, config, identity, cloud)
    setup_logging(log_level)
    click.echo(
        f"lichen: boards take this cloud's acknowledgements with "
        f"{_ack_from_line(str(identity.node_id))}",
        err=True,
    )
    if config.node.role != "cloud":
        click.echo(
            f"lichen: note: {home.config} says role = {config.node.role!r}; running the cloud "
            "role anyway",
            err=True,
        )

    try:
        asyncio.run(run_until_signalled(role.run))
    except KeyboardInterrupt:  # a second Ctrl-C
        raise LichenError("interrupted") from None


cloud_command.add_command(command_group)
