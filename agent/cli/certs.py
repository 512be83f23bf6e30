"""``lichen cloud-cert ca | client | server``: TLS certificates for MQTT brokers."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import click

from ..certs import CA_DAYS, LEAF_DAYS, IssuedFiles, make_ca, make_client, make_server
from ..errors import LichenError
from ..home import Home
from ..identity import load_identity
from .common import F, current_home, home_option, json_option, print_json

__all__ = ["cloud_cert_group"]


def _directory(flag: str, name: str, help: str) -> Callable[[F], F]:
    """A required option naming a directory."""
    return click.option(
        flag, name, required=True, type=click.Path(file_okay=False, path_type=Path), help=help
    )


_OUT = _directory(
    "--out", "out", "Directory to write the certificate and key into (created if missing)."
)
_CA = _directory(
    "--ca", "ca_dir", "Directory holding the CA (ca.pem, ca.key) made by `lichen cloud-cert ca`."
)
_DAYS = click.option("--days", type=click.IntRange(1, 36500), help="Validity in days.")
_FORCE = click.option("--force", is_flag=True, help="Replace existing files.")


@click.group("cloud-cert")
def cloud_cert_group() -> None:
    """Make TLS certificates (ECDSA P-256) for the MQTT uplink and its broker.

    \b
    lichen cloud-cert ca --out pki                          a CA, once per fleet
    lichen cloud-cert server --ca pki --out pki/broker --host broker.lan
    lichen cloud-cert client --ca pki --out pki/board1     CN = this node's id
    """


def _report(files: IssuedFiles, as_json: bool, lines: list[str], what: str) -> None:
    if as_json:
        print_json(
            {
                "subject": files.subject,
                "cert": str(files.cert),
                "key": str(files.key),
                "ca": str(files.ca),
                "config": "\n".join(lines),
            }
        )
        return
    click.echo(f"subject      {files.subject}")
    click.echo(f"certificate  {files.cert}")
    click.echo(f"key          {files.key}  (mode 0600: keep it secret)")
    if files.ca != files.cert:
        click.echo(f"ca           {files.ca}")
    click.echo(f"\n{what}:\n")
    for line in lines:
        click.echo(f"    {line}")


@cloud_cert_group.command("ca")
@_OUT
@click.option("--name", default="Lichen fleet CA", show_default=True, help="The CA's CN.")
@_DAYS
@_FORCE
@json_option
def ca_command(*, out: Path, name: str, days: int | None, force: bool, as_json: bool) -> None:
    """Make a certificate authority: OUT/ca.pem and OUT/ca.key."""
    files = make_ca(out, name=name, days=days or CA_DAYS, force=force)
    lines = [
        f"lichen cloud-cert server --ca {out} --out {out}/broker --host BROKER-HOST",
        f"lichen cloud-cert client --ca {out} --out {out}/NODE",
    ]
    _report(files, as_json, lines, f"Next (keep {files.key} off the boards)")


@cloud_cert_group.command("client")
@home_option
@_CA
@_OUT
@click.option("--name", help="The certificate's CN (default: this node's id).")
@_DAYS
@_FORCE
@json_option
def client_command(
    *, ca_dir: Path, out: Path, name: str | None, days: int | None, force: bool, as_json: bool
) -> None:
    """Make a client certificate signed by the CA: OUT/client.pem, OUT/client.key."""
    home = current_home()
    if name is None:
        if not home.identity.exists():
            raise LichenError(
                f"{home.path} is not a Lichen home, so there is no node id for the CN. "
                "Fix: pass --home DIR of the node, or --name CN"
            )
        name = str(load_identity(home.identity).node_id)
    files = make_client(ca_dir, out, name=name, days=days or LEAF_DAYS, force=force)
    if _is_cloud(home):  # the cloud role's own table, not a board's uplink
        lines = [
            "[cloud]",
            'broker = "mqtts://BROKER-HOST:8883"',
            f'tls_ca = "{files.ca}"',
            f'tls_cert = "{files.cert}"',
            f'tls_key = "{files.key}"',
        ]
    else:
        lines = [
            "[[uplinks.mqtt]]",
            'name = "cloud"',
            'broker = "mqtts://BROKER-HOST:8883"',
            f'ca_file = "{files.ca}"',
            f'cert_file = "{files.cert}"',
            f'key_file = "{files.key}"',
        ]
    _report(files, as_json, lines, f"Paste into {home.config}")


def _is_cloud(home: Home) -> bool:
    """Whether ``home`` is a cloud node's (``[node] role = "cloud"``)."""
    try:
        data = tomllib.loads(home.config.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    node = data.get("node")
    return isinstance(node, dict) and node.get("role") == "cloud"


@cloud_cert_group.command("server")
@_CA
@_OUT
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    help="A DNS name or IP address clients use for the broker (repeat for more).",
)
@_DAYS
@_FORCE
@json_option
def server_command(
    *, ca_dir: Path, out: Path, hosts: tuple[str, ...], days: int | None, force: bool, as_json: bool
) -> None:
    """Make a broker certificate signed by the CA: OUT/server.pem, OUT/server.key."""
    files = make_server(ca_dir, out, hosts=list(hosts), days=days or LEAF_DAYS, force=force)
    lines = [
        "listener 8883",
        f"cafile {files.ca}",
        f"certfile {files.cert}",
        f"keyfile {files.key}",
        "require_certificate true",
        "use_identity_as_username true",
    ]
    _report(files, as_json, lines, "Mosquitto (mosquitto.conf)")
    if not as_json:  # written 0600 for this user: the broker runs as another
        click.echo(
            "\nThe broker must be able to read its key, and nobody else: as root,\n\n"
            f"    chown mosquitto: {files.key}; chmod 0600 {files.key}"
        )
