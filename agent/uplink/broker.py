"""Broker addresses: ``mqtt://HOST[:PORT]`` and ``mqtts://HOST[:PORT]``, parsed
one way for the uplink's ``broker``, the cloud's ``broker`` and the command
line (``docs/uplink.md``), and the ``HOST:PORT`` split they share with other
links' addresses. ``agent.uplink.wire`` re-exports all of it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BROKER_PORTS", "BrokerAddress", "parse_broker", "split_host_port"]

#: the IANA ports of MQTT over TCP and over TLS
BROKER_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed broker address (the uplink's ``broker``, the cloud's ``broker``)."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``HOST:PORT`` / ``[IPv6]:PORT`` (``:PORT`` optional with a ``default_port``)
    → ``(host, port)`` with ``0 <= port < 65536``; ValueError says what is wrong."""
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError("write an IPv6 host in brackets: [ADDRESS]:PORT")
        port_text = tail[1:]
    elif text.count(":") > 1:
        raise ValueError("write an IPv6 host in brackets: [ADDRESS]:PORT")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError("has no host")
    if port_text == "" and default_port is not None:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError("the port must be a number from 0 to 65535")
    return host, int(port_text)


def parse_broker(address: str) -> BrokerAddress:
    """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` → :class:`BrokerAddress`.

    The port defaults to 1883 (``mqtt``) or 8883 (``mqtts``); IPv6 hosts are
    bracketed. ValueError says what is wrong.

    >>> parse_broker("mqtts://broker.example.net")
    BrokerAddress(scheme='mqtts', host='broker.example.net', port=8883)
    >>> parse_broker("mqtt://[::1]:1884").url
    'mqtt://[::1]:1884'
    """
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in BROKER_PORTS:
        raise ValueError("must start with mqtt:// or mqtts://")
    rest = rest.rstrip("/")
    if not rest or "/" in rest or "@" in rest or " " in rest:
        raise ValueError("must be mqtt://HOST:PORT (credentials go in username and password)")
    try:
        host, port = split_host_port(rest, BROKER_PORTS[scheme])
    except ValueError as exc:
        message = str(exc)
        if "brackets" in message:
            message = "write an IPv6 host in brackets: mqtt://[ADDRESS]:PORT"
        elif "port" in message:
            message = "the port must be a number from 1 to 65535"
        raise ValueError(message) from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    return BrokerAddress(scheme, host, port)
