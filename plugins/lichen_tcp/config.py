"""The ``[[transports.tcp]]`` table, and ``tcp://HOST:PORT`` addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from agent.errors import AddressError
from agent.plugin_api import LinkAddress, TransportConfig, setting
from agent.uplink.wire import split_host_port

__all__ = [
    "ADDRESS_HELP",
    "DEFAULT_PORT",
    "TcpConfig",
    "format_address",
    "is_wildcard",
    "parse_address",
]

#: the port Lichen nodes listen on unless configured otherwise
DEFAULT_PORT = 7400
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


#: how to write one, for error messages
ADDRESS_HELP = (
    f"write tcp://HOST:PORT, e.g. tcp://192.168.1.20:{DEFAULT_PORT} (PORT from 1 to 65535, "
    f"{DEFAULT_PORT} when left out; an IPv6 HOST in brackets: tcp://[fd00::7]:{DEFAULT_PORT})"
)


def parse_address(address: str, *, listen: bool = False) -> LinkAddress:
    """``"tcp://HOST[:PORT]"`` (or ``"HOST[:PORT]"``) → its :class:`LinkAddress`;
    the one parser of ``tcp://`` addresses (``peers``, ``--listen``, ``--peer``,
    ``lichen sync``). The port defaults to :data:`DEFAULT_PORT`; ``listen``
    (an address to listen at) also accepts port 0 (any free port) and wants an
    IP address of this machine as the host. IPv6 hosts are bracketed:
    ``tcp://[fe80::1]:7400``. :class:`~agent.errors.AddressError` quotes the
    address and gives the fix.

    >>> parse_address("tcp://192.168.1.20:7400")
    LinkAddress(scheme='tcp', host='192.168.1.20', port=7400)
    >>> parse_address("tcp://board.local").url
    'tcp://board.local:7400'
    >>> parse_address("[::1]:7401").url
    'tcp://[::1]:7401'
    """
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    lowest = 0 if listen else 1
    try:
        if scheme != "tcp":
            raise ValueError("is not a tcp:// address")
        if not rest or "/" in rest or "@" in rest or any(c.isspace() for c in rest):
            raise ValueError("is not tcp://HOST:PORT")
        host, port = split_host_port(rest, DEFAULT_PORT)
        if port < lowest:
            raise ValueError("port")
        if listen:
            _check_host(host)
    except ValueError as exc:
        problem = str(exc)
        if "port" in problem:
            problem = f"the port must be a number from {lowest} to 65535"
        elif "brackets" in problem:
            problem = "an IPv6 host must be in brackets"
        fix = ADDRESS_HELP
        if "not an IP address" in problem:
            fix = (
                "listen at an IP address of this machine: tcp://0.0.0.0:PORT (every IPv4 "
                "interface), tcp://[::]:PORT or tcp://127.0.0.1:PORT"
            )
        raise AddressError(address, problem, fix) from None
    return LinkAddress("tcp", host, port)


def format_address(host: str, port: int) -> str:
    """``(host, port)`` → ``"tcp://HOST:PORT"``, bracketing IPv6 hosts."""
    return LinkAddress("tcp", host, port).url


def is_wildcard(host: str) -> bool:
    """Whether ``host`` means "every interface"."""
    return host in _WILDCARDS


def _check_peers(peers: list[str]) -> None:
    for peer in peers:
        try:
            parse_address(peer)
        except AddressError as exc:  # the key's help gives the fix
            raise ValueError(f"{peer!r}: {exc.problem}") from None


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

    host: str = setting(
        "0.0.0.0",
        check=_check_host,
        help='the address to listen on: "0.0.0.0" every IPv4 interface, "::" every '
        'interface, "127.0.0.1" this machine only',
    )
    port: int = setting(
        DEFAULT_PORT, min=0, max=65535, help="the TCP port to listen on; 0 = any free port"
    )
    listen: bool = setting(True, help="accept incoming connections (false: only connect out)")
    peers: list[str] = setting(
        default_factory=list,
        check=_check_peers,
        help='static peers to connect to, e.g. peers = ["tcp://192.168.1.20:7400"] '
        f"(the port is 1 to 65535, {DEFAULT_PORT} when left out)",
    )
    advertise: bool = setting(
        True, help="announce this node over mDNS (_lichen._tcp); needs zeroconf"
    )
    browse: bool = setting(True, help="look for other nodes over mDNS; needs zeroconf")
    interfaces: list[str] = setting(
        default_factory=list,
        check=_check_interfaces,
        help='IPv4 addresses of the interfaces mDNS uses, e.g. ["192.168.1.10"]; '
        "empty = every interface",
    )
    announce_interval: float = setting(
        5.0,
        min=1.0,
        max=3600.0,
        help="seconds: at most one mDNS re-announcement of changed heads per interval",
    )
    connect_timeout: float = setting(
        5.0, min=0.1, max=300.0, help="seconds a connection attempt may take"
    )
    keepalive: bool = setting(True, help="TCP keepalive probes on idle connections")
    keepalive_idle: float = setting(
        30.0, min=1.0, max=7200.0, help="seconds of silence before the first probe"
    )
    keepalive_interval: float = setting(10.0, min=1.0, max=600.0, help="seconds between probes")
    keepalive_count: int = setting(
        3, min=1, max=60, help="unanswered probes before the connection fails"
    )
    user_timeout: float = setting(
        60.0,
        min=0.0,
        max=3600.0,
        help="seconds sent data may stay unacknowledged before the connection fails "
        "(TCP_USER_TIMEOUT); 0 = the OS default (about 15 minutes)",
    )
    accept_queue: int = setting(
        16,
        min=1,
        max=1024,
        help="incoming connections held for the agent; beyond them nothing more is "
        "accepted until it takes one (the rest wait in the kernel's backlog)",
    )
