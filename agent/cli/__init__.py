"""The ``lichen`` command line. Every command takes ``--home DIR`` (env ``LICHEN_HOME``)."""

from __future__ import annotations

import importlib

import click

from .common import LichenGroup, home_option

__all__ = ["COMMANDS", "cli", "load_command", "main"]


class LichenCommands(LichenGroup):
    """The root group: the built-in commands of :data:`COMMANDS`, loaded on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LichenCommands, context_settings={"help_option_names": ["-h", "--help"]})
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


#: every command and where it lives: a command's module (and what it imports)
#: is loaded only when that command runs or ``--help`` lists it, so ``lichen
#: id`` on a Pi Zero does not pay for the cloud role, the gossip or bundles
COMMANDS = {
    "init": "node:init_command",
    "id": "node:id_command",
    "run": "node:run_command",
    "status": "status:status_command",
    "doctor": "doctor:doctor_command",
    "log": "log:log_group",
    "plugins": "plugins:plugins_group",
    "trust": "mesh:trust_group",
    "fleet": "fleet_rules:fleet_commands",
    "peers": "mesh:peers_command",
    "sync": "sync:sync_command",
    "bundle": "bundle:bundle_group",
    "cloud-cert": "certs:cloud_cert_group",
    "cloud": "cloud:cloud_command",
    "service": "service:service_group",
    "firstboot": "service:firstboot_command",
    "http": "http:http_group",
}


def load_command(name: str) -> click.Command:
    """The command ``name`` of :data:`COMMANDS`, its module imported now."""
    module, _, attr = COMMANDS[name].partition(":")
    loaded = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    command: click.Command = loaded() if not isinstance(loaded, click.Command) else loaded
    return command


def main() -> None:
    cli(prog_name="lichen")
