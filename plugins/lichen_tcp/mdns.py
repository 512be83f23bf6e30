"""mDNS / DNS-SD for the TCP transport, over python-zeroconf's asyncio API.

A node announces one service of type ``_lichen._tcp.local.``: the instance
is named after its node id, the SRV/A records give the port and addresses,
and the TXT record carries ``node`` (the node id) and ``heads`` (the short
digest of its heads). It browses for the same type and hands each peer it
resolves — when it appears and whenever its records change — to a callback
as a :class:`~agent.plugin_api.PeerSighting`.

zeroconf is optional: it is imported when mDNS starts, and
:func:`zeroconf_available` tells whether it can be.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.plugin_api import PeerSighting, cancel_and_wait

from .config import format_address

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = ["SERVICE_TYPE", "Mdns", "local_ipv4_networks", "zeroconf_available"]

SERVICE_TYPE = "_lichen._tcp.local."
_RESOLVE_TIMEOUT_MS = 3000


def zeroconf_available() -> bool:
    """Whether python-zeroconf can be imported (``pip install 'lichen[mdns]'``)."""
    try:
        import zeroconf.asyncio  # noqa: F401
    except ImportError:
        return False
    return True


def local_ipv4_networks() -> list[ipaddress.IPv4Interface]:
    """This machine's IPv4 addresses with their prefixes (via ifaddr, zeroconf's
    dependency); empty if it is missing."""
    try:
        import ifaddr
    except ImportError:
        return []
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4 and isinstance(ip.ip, str):
                found.append(ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}"))
    return found


def _best_address(addresses: list[str], networks: list[ipaddress.IPv4Interface]) -> str:
    """The first advertised address on one of our own subnets, else the first."""
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if any(ip in net.network for net in networks if not net.ip.is_loopback):
            return address
    return addresses[0]


class Mdns:
    """Announce this node and browse for others; one zeroconf instance.

    ``heads`` is called for the digest to put in the TXT record — at start,
    and after :meth:`heads_changed`, at most once per ``announce_interval``
    seconds (mDNS asks responders not to flood; changes in between are
    coalesced and the latest digest wins).

    ::

        mdns = Mdns(node_id=node, port=7400, addresses=["192.168.1.10"],
                    heads=context.heads_digest, on_sighting=print)
        await mdns.start()
        mdns.heads_changed()       # the log grew: re-announce (rate-limited)
        await mdns.close()
    """

    def __init__(
        self,
        *,
        node_id: str,
        port: int,
        addresses: list[str],
        heads: Callable[[], str],
        on_sighting: Callable[[PeerSighting], None],
        interfaces: list[str] | None = None,
        advertise: bool = True,
        browse: bool = True,
        announce_interval: float = 5.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.node_id = node_id
        self.port = port
        self.addresses = addresses
        self.interfaces = interfaces or []
        self.advertise = advertise
        self.browse = browse
        self.announce_interval = announce_interval
        self._heads = heads
        self._on_sighting = on_sighting
        self._log = log or logging.getLogger("lichen.transport.tcp.mdns")
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._advertised: str | None = None
        self._last_announce = 0.0
        self._reannounce: asyncio.Task[None] | None = None
        self._resolving: dict[str, bool] = {}  # name → changed again while resolving
        self._peers: dict[str, PeerSighting] = {}  # instance name → latest sighting
        self._tasks: set[asyncio.Future[Any]] = set()
        self._networks = local_ipv4_networks()

    @property
    def advertised_heads(self) -> str | None:
        """The heads digest in the TXT record now (None before start)."""
        return self._advertised

    @property
    def instance_name(self) -> str | None:
        """The registered instance name (zeroconf renames it on a conflict)."""
        return self._info.name if self._info is not None else None

    @property
    def peers(self) -> list[PeerSighting]:
        """The latest sighting of every peer announced now (withdrawn ones are dropped)."""
        return list(self._peers.values())

    async def start(self) -> None:
        """Open the mDNS sockets, register the service, start browsing."""
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

        interfaces: Any = list(self.interfaces) or InterfaceChoice.All
        self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        if self.advertise:
            digest = self._heads()
            self._info = self._service_info(digest, f"{self.node_id}.{SERVICE_TYPE}")
            broadcast = await self._zc.async_register_service(self._info, allow_name_change=True)
            self._track(asyncio.ensure_future(broadcast))
            self._advertised = digest
            self._last_announce = asyncio.get_running_loop().time()
        if self.browse:
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
            )

    def heads_changed(self) -> None:
        """The node's heads changed: re-announce the TXT record (rate-limited)."""
        if self._info is None or self._reannounce is not None:
            return  # not advertising, or a re-announcement is already due
        self._reannounce = asyncio.get_running_loop().create_task(self._announce_later())

    async def _announce_later(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_announce + self.announce_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._reannounce = None  # a change from here on schedules another
        try:
            digest = self._heads()
        except Exception:
            self._log.exception("heads_digest() failed; the announcement is unchanged")
            return
        if digest == self._advertised or self._info is None or self._zc is None:
            return
        self._info = self._service_info(digest, self._info.name)
        self._advertised = digest
        self._last_announce = loop.time()
        self._track(asyncio.ensure_future(await self._zc.async_update_service(self._info)))
        self._log.debug("re-announced heads %s", digest)

    def _service_info(self, digest: str, name: str) -> AsyncServiceInfo:
        from zeroconf.asyncio import AsyncServiceInfo

        return AsyncServiceInfo(
            SERVICE_TYPE,
            name,
            port=self.port,
            properties={"node": self.node_id, "heads": digest},
            server=f"{self.node_id}.local.",
            parsed_addresses=self.addresses,
        )

    def _on_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == self.instance_name:
            return
        if state_change.name == "Removed":
            self._peers.pop(name, None)
            return
        if name in self._resolving:
            self._resolving[name] = True  # resolve once more when this one is done
            return
        self._resolving[name] = False
        self._track(asyncio.ensure_future(self._resolve(name)))

    async def _resolve(self, name: str) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo

        try:
            while self._zc is not None:
                self._resolving[name] = False
                info = AsyncServiceInfo(SERVICE_TYPE, name)
                if await info.async_request(self._zc.zeroconf, _RESOLVE_TIMEOUT_MS):
                    self._publish(name, info, info.parsed_addresses(IPVersion.V4Only))
                if not self._resolving.get(name):
                    return
        finally:
            self._resolving.pop(name, None)

    def _publish(self, name: str, info: AsyncServiceInfo, addresses: list[str]) -> None:
        properties = info.decoded_properties
        node = properties.get("node")
        if node == self.node_id or not addresses or not info.port:
            return
        sighting = PeerSighting(
            address=format_address(_best_address(addresses, self._networks), info.port),
            seen_at_ms=time.time_ns() // 1_000_000,
            node_id=node,
            heads_digest=properties.get("heads"),
        )
        self._peers[name] = sighting
        self._on_sighting(sighting)

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Withdraw the service (goodbye packets), stop browsing, close the sockets."""
        zc, self._zc = self._zc, None
        if self._reannounce is not None:
            self._reannounce.cancel()
            self._reannounce = None
        await cancel_and_wait(self._tasks)
        if zc is not None:
            if self._browser is not None:
                await self._browser.async_cancel()
            await zc.async_close()  # unregisters the service, sending goodbyes
        self._info = None
