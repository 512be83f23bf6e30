"""lichen_tcp: the TCP transport — streams over Wi-Fi or Ethernet, peers found by mDNS.

::

    [[transports.tcp]]
    name = "wifi"                       # listens on 0.0.0.0:7400, announces and browses

The modules:

=================  ==========================================================
``config``         :class:`TcpConfig` (the ``[[transports.tcp]]`` table) and
                   ``tcp://HOST:PORT`` addresses
``mdns``           :class:`Mdns`: the ``_lichen._tcp.local.`` announcement
                   (TXT ``node`` and ``heads``) and the browser, over
                   python-zeroconf (optional)
``transport``      :class:`TcpTransport`, the plugin
=================  ==========================================================

Streams are :class:`agent.transport.AsyncioStream`; reconnecting to static
peers uses :class:`agent.backoff.Backoff`.
"""

from .config import DEFAULT_PORT, TcpConfig, format_address, parse_address
from .mdns import SERVICE_TYPE, Mdns, zeroconf_available
from .transport import TcpTransport

__all__ = [
    "DEFAULT_PORT",
    "SERVICE_TYPE",
    "Mdns",
    "TcpConfig",
    "TcpTransport",
    "format_address",
    "parse_address",
    "zeroconf_available",
]
