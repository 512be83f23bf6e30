"""The TCP transport: listen, accept, connect, and find peers over mDNS."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from agent.errors import TransportError
from agent.plugin_api import (
    LinkAddress,
    PeerSighting,
    Stream,
    Transport,
    TransportContext,
    cancel_and_wait,
)
from agent.transport import AsyncioStream, SightingFeed, tune_tcp_socket

from .config import TcpConfig, format_address, is_wildcard, parse_address
from .mdns import Mdns, local_ipv4_networks, zeroconf_available

__all__ = ["TcpTransport"]

#: a frame's size when the socket cannot tell its segment size
_DEFAULT_SEGMENT = 1448


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TcpTransport(Transport):
    """Streams over TCP (Wi-Fi, Ethernet), peers found by mDNS or configured.

    ::

        [[transports.tcp]]
        name = "wifi"
        port = 7400
        peers = ["tcp://192.168.1.20:7400"]     # optional: nodes mDNS cannot see

    Addresses are ``tcp://HOST:PORT`` (``tcp://[::1]:7400`` for IPv6; the port
    is 7400 when left out), parsed by :meth:`parse_address`.
    :meth:`start` listens on ``host``:``port`` (``port = 0``: any free port,
    see :attr:`address`) and, with zeroconf installed, announces the node
    as ``_lichen._tcp.local.`` and browses for others; without zeroconf it
    logs that it works with static peers only. Streams are
    :class:`~agent.transport.AsyncioStream` with TCP_NODELAY, keepalive and
    a user timeout, so a vanished peer fails a send within ``user_timeout``.

    :meth:`sightings` yields each static peer once (node id unknown), the
    peers mDNS knows already, then every new mDNS sighting (a peer that
    appears, or whose heads or address change). The agent calls :meth:`heads_changed` whenever its
    heads change; the TXT record follows, at most once per
    ``announce_interval`` seconds.
    """

    Config = TcpConfig
    scheme = "tcp"
    config: TcpConfig

    @classmethod
    def parse_address(cls, address: str, *, listen: bool = False) -> LinkAddress:
        return parse_address(address, listen=listen)

    @classmethod
    def config_for(
        cls, name: str | None, address: LinkAddress | None, base: Any = None
    ) -> TcpConfig:
        """``lichen run --listen tcp://HOST:PORT`` listens there; with no address
        (``--peer`` alone, ``lichen sync``) the instance only dials out. Every
        other key is ``base``'s (the first ``[[transports.tcp]]`` table)."""
        name = name or "tcp"
        config: TcpConfig = base if isinstance(base, TcpConfig) else TcpConfig(name=name)
        if address is None:
            return dataclasses.replace(config, name=name, listen=False)
        return dataclasses.replace(
            config, name=name, host=address.host, port=address.port or 0, listen=True
        )

    def __init__(self, config: TcpConfig, context: TransportContext) -> None:
        super().__init__(config, context)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._incoming: asyncio.Queue[AsyncioStream | None] = asyncio.Queue(config.accept_queue)
        self._feed = SightingFeed()
        self._mdns: Mdns | None = None
        self._port = config.port
        self._closed = False

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when configured as 0)."""
        return self._port

    @property
    def address(self) -> str:
        """This transport's own address, e.g. ``tcp://127.0.0.1:7400``."""
        host = self.config.host
        if is_wildcard(host):
            host = "::1" if host == "::" else "127.0.0.1"
        return format_address(host, self._port)

    @property
    def static_peers(self) -> list[str]:
        """The configured peers, as ``tcp://HOST:PORT``."""
        return [parse_address(peer).url for peer in self.config.peers]

    @property
    def mdns(self) -> Mdns | None:
        """The mDNS announcer/browser, when running."""
        return self._mdns

    async def start(self) -> None:
        if self._closed:
            raise TransportError(f"transport {self.config.name!r} is closed")
        if self.config.listen:
            self._listener = self._listen()
            self._port = self._listener.getsockname()[1]
            self._accepting = asyncio.create_task(self._accept_forever(self._listener))
            self.context.log.info("listening on %s", self.address)
        if self.config.advertise or self.config.browse:
            await self._start_mdns()

    async def _start_mdns(self) -> None:
        if not zeroconf_available():
            self.context.log.warning(
                "zeroconf is not installed: no mDNS discovery, static peers only "
                "(pip install 'lichen[mdns]')"
            )
            return
        mdns = Mdns(
            node_id=self.context.node_id,
            port=self._port,
            addresses=self._advertised_addresses(),
            heads=self.context.heads_digest,
            on_sighting=self._feed.publish,
            interfaces=self.config.interfaces,
            advertise=self.config.advertise and self._listener is not None,
            browse=self.config.browse,
            announce_interval=self.config.announce_interval,
            log=self.context.log,
        )
        try:
            await mdns.start()
        except OSError as exc:
            await mdns.close()
            self.context.log.warning("mDNS unavailable (%s): static peers only", exc)
            return
        self._mdns = mdns

    def _advertised_addresses(self) -> list[str]:
        if self.config.interfaces:
            return list(self.config.interfaces)
        if not is_wildcard(self.config.host):
            return [self.config.host]
        mine = [str(n.ip) for n in local_ipv4_networks() if not n.ip.is_loopback]
        return mine or ["127.0.0.1"]

    def heads_changed(self) -> None:
        """Call when this node's heads changed: the mDNS TXT record is updated with
        ``context.heads_digest()`` (read when the announcement goes out, at most
        once per ``announce_interval``). Does nothing without mDNS."""
        if self._mdns is not None:
            self._mdns.heads_changed()

    def _listen(self) -> socket.socket:
        host, port = self.config.host, self.config.port
        try:
            if host in ("", "::"):  # every interface, IPv6 and (where it can) IPv4
                sock = socket.create_server(
                    ("", port), family=socket.AF_INET6, backlog=self.config.accept_queue,
                    dualstack_ipv6=socket.has_dualstack_ipv6(),
                )  # fmt: skip
            else:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.create_server(
                    (host, port), family=family, backlog=self.config.accept_queue
                )
        except OSError as exc:
            raise TransportError(
                f"cannot listen on {format_address(host, port)}: {exc.strerror or exc}"
            ) from exc
        sock.setblocking(False)
        return sock

    async def _accept_forever(self, listener: socket.socket) -> None:
        """Take connections while the agent takes them from the queue: once
        ``accept_queue`` wait, nothing more is taken from the kernel (further
        callers wait in its backlog, then their SYNs are dropped and retried),
        so a flood costs this process nothing beyond what the agent admits."""
        loop = asyncio.get_running_loop()
        while True:  # until cancelled by close()
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if self._closed:
                    return
                self.context.log.warning("accept failed: %s", exc.strerror or exc)
                await asyncio.sleep(0.1)
                continue
            try:
                reader, writer = await asyncio.open_connection(sock=conn)
            except OSError:
                conn.close()
                continue
            await self._incoming.put(self._stream(reader, writer))  # waits while full

    def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncioStream:
        sock: socket.socket | None = writer.get_extra_info("socket")
        cfg = self.config
        keepalive = (cfg.keepalive_idle, cfg.keepalive_interval, cfg.keepalive_count)
        tune_tcp_socket(
            sock, keepalive=keepalive if cfg.keepalive else None, user_timeout=cfg.user_timeout
        )
        segment = _DEFAULT_SEGMENT
        if sock is not None:
            with contextlib.suppress(OSError):
                segment = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) or segment
        peername = writer.get_extra_info("peername")
        peer = format_address(peername[0], peername[1]) if peername else "tcp://?"
        return AsyncioStream(reader, writer, peer=peer, max_frame_hint=segment)

    async def accept(self) -> Stream:
        if not self.config.listen:  # a node that only dials: nothing ever comes
            raise NotImplementedError(f"transport {self.config.name!r} is not listening")
        if self._listener is None and not self._closed:
            raise TransportError(f"transport {self.config.name!r} is not listening")
        stream = await self._incoming.get()
        if stream is None:  # closed: wake the next waiter too
            self._incoming.put_nowait(None)
            raise TransportError(f"transport {self.config.name!r} is closed")
        return stream

    async def connect(self, address: str) -> Stream:
        if self._closed:
            raise TransportError(f"transport {self.config.name!r} is closed")
        target = parse_address(address)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                reader, writer = await asyncio.open_connection(target.host, target.port)
        except TimeoutError:
            raise TransportError(
                f"connecting to {address} timed out after {self.config.connect_timeout} s"
            ) from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {address}: {exc.strerror or exc}") from exc
        return self._stream(reader, writer)

    def sightings(self) -> AsyncGenerator[PeerSighting, None]:
        """Static peers, then peers mDNS knows, then new sightings, until :meth:`close`;
        a generator (``contextlib.aclosing`` closes it early)."""
        return self._feed.stream(self._known())

    def _known(self) -> Iterator[PeerSighting]:
        """The static peers, then the peers mDNS knows (seen before an iterator started)."""
        for peer in self.static_peers:
            yield PeerSighting(address=peer, seen_at_ms=_now_ms())
        yield from self._mdns.peers if self._mdns is not None else ()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._mdns is not None:
            mdns, self._mdns = self._mdns, None
            await mdns.close()
        if self._accepting is not None:
            await cancel_and_wait((self._accepting,))
        if self._listener is not None:
            self._listener.close()
        while not self._incoming.empty():
            pending = self._incoming.get_nowait()
            if pending is not None:
                pending.abort()
        self._incoming.put_nowait(None)
        self._feed.close()
