"""The ``lichen`` command line. Every command takes ``--home DIR`` (env ``LICHEN_HOME``)."""

from __future__ import annotations

import click

from .bundle import bundle_group
from .certs import cloud_cert_group
from .cloud import cloud_command
from .common import LichenGroup, home_option
from .doctor import doctor_command
from .fleet import fleet_group
from .fleet_rules import fleet_group_command, fleet_rule_command, fleet_rules_command
from .http import http_group
from .log import log_group
from .mesh import peers_command, trust_group
from .node import id_command, init_command, run_command
from .plugins import plugins_group
from .service import firstboot_command, service_group
from .status import status_command
from .sync import sync_command

__all__ = ["cli", "main"]


@click.group(cls=LichenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@home_option
@click.version_option(package_name="lichen")
def cli() -> None:
    """Lichen: sensors into a signed, append-only, replicated log.

    \b
    lichen init --board rpi-zero-2w     create this node
    lichen run                          run the agent
    lichen status                       what this node holds and does
    lichen doctor                       what this board needs, and the fixes
    lichen log tail -f                  watch entries arrive
    lichen sync tcp://HOST:7400         sync once with a peer
    lichen fleet invite                 a one-time code for a new node
    lichen bundle export FILE           entries into a file, for a USB stick
    lichen cloud --broker mqtt://HOST   run the cloud ingestion role
    sudo lichen service install --now   run the agent as a systemd service
    lichen http url                     where the dashboard is
    """


for command in (
    init_command,
    id_command,
    run_command,
    status_command,
    doctor_command,
    log_group,
    plugins_group,
    trust_group,
    fleet_group,
    peers_command,
    sync_command,
    bundle_group,
    cloud_cert_group,
    cloud_command,
    service_group,
    firstboot_command,
    http_group,
):
    cli.add_command(command)
for command in (fleet_rule_command, fleet_rules_command, fleet_group_command):
    fleet_group.add_command(command)


def main() -> None:
    cli(prog_name="lichen")
