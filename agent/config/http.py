"""The ``[http]`` table of ``lichen.toml``: where a board serves its dashboard.

::

    [http]
    listen = "127.0.0.1:8470"     # "off" (the default): no dashboard
    token_on_loopback = false      # true: the token is asked on loopback too
    timeout = 30                   # seconds a client may stall before it is dropped
    max_streams = 8                # live pages (event streams) open at once

Beyond loopback, every request needs the node's local access token
(``HOME/state/http-token``, made and printed by ``lichen http token``); the
agent refuses to start there without one (:mod:`agent.web.token`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..schema import setting
from .cloud import is_loopback, parse_listen

__all__ = ["DEFAULT_DASHBOARD", "HttpConfig", "with_listen"]

#: the dashboard's documented address (`make run` serves it here)
DEFAULT_DASHBOARD = "127.0.0.1:8470"


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """``[http]``: the board's dashboard, JSON API and ``/metrics``."""

    listen: str = setting(
        "off",
        check=parse_listen,
        help=f'listen = "{DEFAULT_DASHBOARD}" (port 0 = any free port; "off" = no dashboard; '
        "beyond loopback only with the token of `lichen http token`)",
    )
    token_on_loopback: bool = setting(
        False, help="token_on_loopback = true asks for the access token on loopback too"
    )
    timeout: float = setting(
        30.0,
        min=0.1,
        max=3600.0,
        help="timeout = 30 (seconds a client may stall sending a request or reading a "
        "response before it is dropped)",
    )
    max_streams: int = setting(
        8, min=1, max=256, help="max_streams = 8 (live pages open at once; more get 503)"
    )

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)``, or None when the dashboard is off."""
        return parse_listen(self.listen)

    @property
    def needs_token(self) -> bool:
        address = self.address
        return address is not None and (self.token_on_loopback or not is_loopback(address[0]))


def with_listen(
    config: HttpConfig, listen: str | None, *, file: str = "command line"
) -> HttpConfig:
    """``config`` with ``--http ADDRESS`` applied (checked like the key)."""
    if listen is None:
        return config
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, key="--http", value=listen) from None
    changes: dict[str, Any] = {"listen": listen}
    return dataclasses.replace(config, **changes)
