"""The ``[cloud]`` table of ``lichen.toml``, and the command-line overrides.

Checked like every other table (:func:`agent.schema.build`): a wrong key or
value stops ``lichen cloud`` with the file, the key, the bad value and the fix.
Nothing here imports paho, psycopg or h11: a board reads this table too.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..identity import NodeId
from ..schema import readable_file, setting
from ..uplink.config import parse_size
from ..uplink.wire import (
    DEFAULT_PREFIX,
    BrokerAddress,
    check_client_id,
    check_topic_level,
    check_topic_prefix,
    parse_broker,
    split_host_port,
)

__all__ = [
    "DEFAULT_BOARD_QUOTA",
    "DEFAULT_GROUP",
    "DEFAULT_HTTP",
    "CloudConfig",
    "apply_overrides",
    "is_loopback",
    "parse_listen",
    "starter_cloud_config",
]

DEFAULT_GROUP = "lichen-cloud"
DEFAULT_HTTP = "127.0.0.1:8480"
MIN_TOKEN = 16
TOKEN_RECIPE = 'make one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
#: what one board may have stored in the cloud: years of readings, not a disk
DEFAULT_BOARD_QUOTA = "10GB"


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (port 0 = any free port) → ``(host, port)``; ``""`` / ``"off"`` → None."""
    if text in ("", "off"):
        return None
    return split_host_port(text, None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to anything


def _check_authors(ids: list[str]) -> None:
    for text in ids:
        NodeId.parse(text)


def _check_fleet(text: str) -> None:
    """The shape of a fleet id (its checksum is checked when the role starts)."""
    if text and not (text.startswith("lf1") and len(text) == 32):
        raise ValueError(f"{text!r} is not a fleet id (lf1…, 32 characters: lichen fleet members)")


@dataclass(frozen=True, kw_only=True)
class CloudConfig:
    """``[cloud]``: where to ingest from, where to store, whom to trust."""

    broker: str = setting(
        "mqtt://127.0.0.1:1883",
        check=parse_broker,
        help='broker = "mqtts://broker.example.net:8883"',
    )
    username: str = setting("", help='username = "cloud" ("" = none)')
    password: str = setting("", help='password = "secret" ("" = none)')
    tls_ca: str = setting(
        "", check=readable_file, help='tls_ca = "/etc/lichen/ca.pem" ("" = system CAs)'
    )
    tls_cert: str = setting(
        "", check=readable_file, help='tls_cert = "/etc/lichen/cloud.pem" (client cert)'
    )
    tls_key: str = setting("", check=readable_file, help='tls_key = "/etc/lichen/cloud.key"')
    client_id: str = setting(
        "",
        check=check_client_id,
        help='client_id = "lichen-cloud-1" ("" = derived from this node\'s id, stable)',
    )
    group: str = setting(
        DEFAULT_GROUP, check=check_topic_level, help='group = "lichen-cloud" (shared subscription)'
    )
    prefix: str = setting(DEFAULT_PREFIX, check=check_topic_prefix, help='prefix = "lichen/v1"')
    keepalive: int = setting(60, min=5, max=65535, help="keepalive = 60 (seconds)")
    session_expiry: int = setting(
        86400,
        min=0,
        max=4294967295,
        help="session_expiry = 86400 (seconds the broker keeps our session offline)",
    )
    max_inflight: int = setting(
        64, min=1, max=65535, help="max_inflight = 64 (unacknowledged batches)"
    )
    sink: Literal["sqlite", "postgres"] = setting(
        "sqlite", help='sink = "sqlite" (this home\'s log) or "postgres"'
    )
    postgres: str = setting(
        "", help='postgres = "postgresql://lichen@db.example.net/lichen" (a DSN)'
    )
    accept: Literal["any", "trusted"] = setting(
        "trusted",
        help='accept = "trusted" (only boards in `lichen trust list` and authors) or '
        '"any" (any valid signature: a lab, never a deployment)',
    )
    authors: list[str] = setting(
        default_factory=list,
        check=_check_authors,
        help='authors = ["lc1…", …] (node ids accepted besides `lichen trust list`)',
    )
    fleet: str = setting(
        "",
        check=_check_fleet,
        help='fleet = "lf1…" (the fleet whose members are admitted besides the trust store; '
        '"" = the fleet this node joined, if any)',
    )
    board_quota: str = setting(
        DEFAULT_BOARD_QUOTA,
        check=parse_size,
        help=f'board_quota = "{DEFAULT_BOARD_QUOTA}" (entry bytes stored per board; '
        '"0" = no quota)',
    )
    ingest_workers: int = setting(
        -1,
        min=-1,
        max=4,
        help="ingest_workers = -1 (processes checking entries under a backlog; "
        "-1 = one per core when there are several, 0 = never)",
    )
    ingest_backlog: str = setting(
        "256KB",
        check=parse_size,
        help='ingest_backlog = "256KB" (messages waiting that start the ingest workers)',
    )
    ack_interval: float = setting(
        0.5,
        min=0.0,
        max=60.0,
        help="ack_interval = 0.5 (seconds between acknowledgements to one board)",
    )
    compact_interval: float = setting(
        600.0, min=1.0, help="compact_interval = 600 (seconds between prunes of our _acks history)"
    )
    beacon_interval: float = setting(
        60.0,
        min=0.0,
        help="beacon_interval = 60 (seconds between signed time beacons in this cloud's "
        "feed, for boards without a real-time clock; 0 = none, and none with acknowledgements)",
    )
    http: str = setting(
        DEFAULT_HTTP,
        check=parse_listen,
        help='http = "127.0.0.1:8480" (port 0 = any free port; "off" = no HTTP API)',
    )
    http_token: str = setting(
        "",
        help=f'http_token = "…" (at least {MIN_TOKEN} characters; every request then '
        'needs "Authorization: Bearer …"; required to serve beyond loopback)',
    )
    http_timeout: float = setting(
        30.0,
        min=0.1,
        max=3600.0,
        help="http_timeout = 30 (seconds a client may stop sending its request or "
        "reading the response before it is dropped)",
    )
    max_bundle: str = setting(
        "64MB",
        check=parse_size,
        help='max_bundle = "64MB" (the largest bundle POST /v1/bundles takes; "0" = none)',
    )

    def __post_init__(self) -> None:
        if self.sink == "postgres" and not self.postgres:
            raise ConfigError(
                'sink = "postgres" needs a DSN',
                key="[cloud] postgres",
                fix='postgres = "postgresql://USER@HOST/DB" (or run lichen cloud --postgres DSN)',
            )
        if self.http_token and len(self.http_token) < MIN_TOKEN:
            raise ConfigError(
                f"is {len(self.http_token)} characters long; a guessable token protects nothing",
                key="[cloud] http_token",
                fix=f"at least {MIN_TOKEN} random characters: {TOKEN_RECIPE}",
            )
        address = self.http_address
        if address is not None and not self.http_token and not is_loopback(address[0]):
            raise ConfigError(
                f"http = {self.http!r} serves the API beyond this machine without an access token",
                key="[cloud] http_token",
                fix=f'http_token = "…" (or --http-token, or LICHEN_HTTP_TOKEN; {TOKEN_RECIPE}), '
                f'sent by clients as "Authorization: Bearer …"; or http = '
                f'"127.0.0.1:{address[1]}" behind a reverse proxy',
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(
                "a client certificate needs both files",
                key="[cloud] tls_cert / tls_key",
                fix="set both tls_cert and tls_key, or neither",
            )

    @property
    def broker_url(self) -> BrokerAddress:
        return parse_broker(self.broker)

    @property
    def http_address(self) -> tuple[str, int] | None:
        return parse_listen(self.http)

    @property
    def max_bundle_bytes(self) -> int:
        return parse_size(self.max_bundle)

    @property
    def ingest_backlog_bytes(self) -> int:
        return parse_size(self.ingest_backlog)

    @property
    def board_quota_bytes(self) -> int:
        """``board_quota`` in bytes (0: no quota)."""
        return parse_size(self.board_quota)

    @property
    def trusted_authors(self) -> frozenset[bytes]:
        return frozenset(NodeId.parse(t).key for t in self.authors)

    def default_client_id(self, node_id: NodeId) -> str:
        """The MQTT client id: configured, else stable for this node (one per worker)."""
        return self.client_id or f"lichen-cloud-{str(node_id)[3:19]}"


def apply_overrides(
    config: CloudConfig,
    *,
    broker: str | None = None,
    group: str | None = None,
    http: str | None = None,
    http_token: str | None = None,
    postgres: str | None = None,
    file: str = "command line",
) -> CloudConfig:
    """``config`` with command-line flags applied (each checked like its key)."""
    changes: dict[str, Any] = {}
    checks = {"broker": parse_broker, "group": check_topic_level, "http": parse_listen}
    for name, value in (("broker", broker), ("group", group), ("http", http)):
        if value is None:
            continue
        try:
            checks[name](value)
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key=f"--{name}", value=value) from None
        changes[name] = value
    if http_token is not None:
        changes["http_token"] = http_token
    if postgres is not None:
        if not postgres:
            raise ConfigError("is empty", file=file, key="--postgres", fix="--postgres DSN")
        changes |= {"postgres": postgres, "sink": "postgres"}
    return dataclasses.replace(config, **changes) if changes else config


def starter_cloud_config(name: str, node_id: str) -> str:
    """A commented starter ``lichen.toml`` for a cloud node."""
    return "\n".join(
        [
            f"# lichen.toml — configuration of cloud node {name!r} ({node_id}).",
            "# Keys and defaults: docs/cloud.md.",
            "",
            "[node]",
            f'name = "{name}"',
            'role = "cloud"',
            'board = "generic"',
            "",
            "[cloud]",
            '# broker = "mqtt://127.0.0.1:1883"',
            '# group = "lichen-cloud"        # shared subscription: N workers, one group',
            '# sink = "sqlite"               # or "postgres" with postgres = "DSN"',
            '# accept = "trusted"            # boards in `lichen trust list`; "any" = a lab',
            '# fleet = "lf1…"                # admit this fleet\'s members (docs/fleet.md)',
            f'# board_quota = "{DEFAULT_BOARD_QUOTA}"        # entry bytes stored per board',
            "# ack_interval = 0.5",
            '# http = "127.0.0.1:8480"       # beyond loopback only with http_token = "…"',
            "",
        ]
    )
