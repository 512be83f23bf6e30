"""``lichen http token|url``: the dashboard's access token and address."""

from __future__ import annotations

from urllib.parse import quote

import click

from ..errors import LichenError
from .common import agent_status, current_home, home_option

__all__ = ["http_group"]


@click.group("http")
def http_group() -> None:
    """The dashboard: its access token and where it is served."""


@http_group.command("token")
@home_option
@click.option("--new", is_flag=True, help="Replace the token (a running agent keeps the old "
              "one until it is restarted; browsers then need the new link).")  # fmt: skip
def token_command(new: bool) -> None:
    """Print the dashboard's access token, made first if there is none.

    Beyond loopback every request needs it: `Authorization: Bearer TOKEN`, or
    once in a browser `http://BOARD:8470/?token=TOKEN` (`lichen http url`)."""
    from ..web.token import make_token

    home = current_home()
    if not home.path.is_dir():
        raise LichenError(f"{home.path} is not a Lichen home. Fix: lichen --home {home.path} init")
    token, made = make_token(home.http_token, new=new)
    if made:
        click.echo(f"made a new token in {home.http_token}", err=True)
    click.echo(token)


@http_group.command("url")
@home_option
def url_command() -> None:
    """Print the running agent's dashboard address (with the token, if it needs one)."""
    from ..web.token import load_token

    home = current_home()
    running = agent_status(home.status_file)
    http = (running or {}).get("http")
    if not http:
        raise LichenError(
            "no dashboard is served for this home: the agent is not running, or runs without "
            "one. Fix: lichen run --http 127.0.0.1:8470 (or [http] listen in lichen.toml)"
        )
    url = str(http["url"])
    if http.get("token"):
        token = load_token(home.http_token)
        if token is None:
            raise LichenError(f"the dashboard needs a token and {home.http_token} has none")
        url += f"?token={quote(token)}"
    click.echo(url)
