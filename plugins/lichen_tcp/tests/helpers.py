"""What the TCP transport's tests share: a transport factory (its context is
agent.testing's fake), and probes for what this machine's network can do."""

from __future__ import annotations

import os
import shutil
import socket
import struct
from typing import Any

from agent.testing import FakeTransportContext
from lichen_tcp import TcpConfig, TcpTransport

_MDNS_GROUP = "224.0.0.251"


def make_transport(node_id: str = "lc1test", **config: Any) -> TcpTransport:
    """A TCP transport on a free loopback port, mDNS off unless asked for; its
    context is a :class:`~agent.testing.FakeTransportContext` advertising heads
    digest ``h0`` (see :func:`context_of`)."""
    settings: dict[str, Any] = {
        "name": node_id,
        "host": "127.0.0.1",
        "port": 0,
        "advertise": False,
        "browse": False,
    }
    settings.update(config)
    return TcpTransport(
        TcpConfig(**settings), FakeTransportContext(node_id, digest="h0", name=node_id)
    )


def context_of(transport: TcpTransport) -> FakeTransportContext:
    context = transport.context
    assert isinstance(context, FakeTransportContext)
    return context


def loopback_multicast_works(timeout: float = 1.0) -> bool:
    """Whether a multicast datagram sent on 127.0.0.1 comes back to a member on 127.0.0.1
    (some kernels and containers cannot: lo has no MULTICAST flag)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind(("", 0))
        port = receiver.getsockname()[1]
        loopback = socket.inet_aton("127.0.0.1")
        membership = struct.pack("4s4s", socket.inet_aton(_MDNS_GROUP), loopback)
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        receiver.settimeout(timeout)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, loopback)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(b"lichen-probe", (_MDNS_GROUP, port))
        return receiver.recv(64) == b"lichen-probe"
    except OSError:
        return False
    finally:
        receiver.close()
        sender.close()


def why_no_namespaces() -> str | None:
    """Why network namespaces cannot be made here, or None if they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None
