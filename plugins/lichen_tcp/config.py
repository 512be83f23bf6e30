"""The ``[[transports.tcp]]`` table, and ``tcp://HOST:PORT`` addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from agent.plugin_api import TransportConfig

__all__ = ["DEFAULT_PORT", "TcpConfig", "format_address", "is_wildcard", "parse_address"]

#: the port Lichen nodes listen on unless configured otherwise
DEFAULT_PORT = 7400
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def parse_address(address: str) -> tuple[str, int]:
    """``"tcp://HOST:PORT"`` (or ``"HOST:PORT"``) → ``(host, port)``.

    IPv6 hosts are bracketed: ``tcp://[fe80::1]:7400``. ValueError says what
    is wrong.

    >>> parse_address("tcp://192.168.1.20:7400")
    ('192.168.1.20', 7400)
    >>> parse_address("[::1]:7400")
    ('::1', 7400)
    """
    rest = address
    if "://" in address:
        scheme, _, rest = address.partition("://")
        if scheme != "tcp":
            raise ValueError(f"{address!r} is not a tcp:// address")
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(f"{address!r}: write an IPv6 address as tcp://[ADDRESS]:PORT")
        port_text = port_text[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"{address!r} is not HOST:PORT, e.g. tcp://192.168.1.20:7400")
    if not host or "/" in host or " " in host:
        raise ValueError(f"{address!r} has no valid host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """``(host, port)`` → ``"tcp://HOST:PORT"``, bracketing IPv6 hosts."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def is_wildcard(host: str) -> bool:
    """Whether ``host`` means "every interface"."""
    return host in _WILDCARDS


def _check_peers(peers: list[str]) -> None:
    for peer in peers:
        parse_address(peer)


def _check_interfaces(interfaces: list[str]) -> None:
    for interface in interfaces:
        try:
            ipaddress.IPv4Address(interface)
        except ValueError:
            raise ValueError(
                f"{interface!r} is not an IPv4 address of this node's interfaces"
            ) from None


def _check_host(host: str) -> None:
    if not is_wildcard(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address") from None


@dataclass(frozen=True, kw_only=True)
class TcpConfig(TransportConfig):
    """One ``[[transports.tcp]]`` table; ``sample.toml`` shows every key."""

    host: str = field(
        default="0.0.0.0",
        metadata={
            "check": _check_host,
            "help": 'the address to listen on: "0.0.0.0" every IPv4 interface, "::" every '
            'interface, "127.0.0.1" this machine only',
        },
    )
    port: int = field(
        default=DEFAULT_PORT,
        metadata={"min": 0, "max": 65535, "help": "the TCP port to listen on; 0 = any free port"},
    )
    listen: bool = field(
        default=True, metadata={"help": "accept incoming connections (false: only connect out)"}
    )
    peers: list[str] = field(
        default_factory=list,
        metadata={
            "check": _check_peers,
            "help": 'static peers to connect to, e.g. peers = ["tcp://192.168.1.20:7400"]',
        },
    )
    advertise: bool = field(
        default=True,
        metadata={"help": "announce this node over mDNS (_lichen._tcp); needs zeroconf"},
    )
    browse: bool = field(
        default=True,
        metadata={"help": "look for other nodes over mDNS; needs zeroconf"},
    )
    interfaces: list[str] = field(
        default_factory=list,
        metadata={
            "check": _check_interfaces,
            "help": 'IPv4 addresses of the interfaces mDNS uses, e.g. ["192.168.1.10"]; '
            "empty = every interface",
        },
    )
    announce_interval: float = field(
        default=5.0,
        metadata={
            "min": 1.0,
            "max": 3600.0,
            "help": "seconds: at most one mDNS re-announcement of changed heads per interval",
        },
    )
    connect_timeout: float = field(
        default=5.0,
        metadata={"min": 0.1, "max": 300.0, "help": "seconds a connection attempt may take"},
    )
    keepalive: bool = field(
        default=True, metadata={"help": "TCP keepalive probes on idle connections"}
    )
    keepalive_idle: float = field(
        default=30.0,
        metadata={"min": 1.0, "max": 7200.0, "help": "seconds of silence before the first probe"},
    )
    keepalive_interval: float = field(
        default=10.0, metadata={"min": 1.0, "max": 600.0, "help": "seconds between probes"}
    )
    keepalive_count: int = field(
        default=3,
        metadata={"min": 1, "max": 60, "help": "unanswered probes before the connection fails"},
    )
    user_timeout: float = field(
        default=60.0,
        metadata={
            "min": 0.0,
            "max": 3600.0,
            "help": "seconds sent data may stay unacknowledged before the connection fails "
            "(TCP_USER_TIMEOUT); 0 = the OS default (about 15 minutes)",
        },
    )
    accept_queue: int = field(
        default=16,
        metadata={
            "min": 1,
            "max": 1024,
            "help": "incoming connections held for the agent; more are closed at once",
        },
    )
