"""The node's transport instances: each started, and restarted with backoff, on its own.

A node runs one :class:`TransportLink` per configured transport instance —
two ``[[transports.tcp]]`` tables, or ``lichen run --listen A --listen B``,
are two links, each with its own listener. A link whose transport fails to
start (its port is taken, its radio is missing) does not stop the agent: it
is tried again after a jittered, doubling delay
(:class:`~agent.backoff.Backoff`, 1 s up to 60 s), says so in the log once
per attempt, and shows ``retrying`` with the error and the next attempt in
``lichen status``. Every attempt starts a fresh plugin object.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backoff import Backoff
from ..identity import NodeId
from ..link_api import LinkAddress, Transport, TransportContext
from ..logs import event

if TYPE_CHECKING:
    from ..plugins import ConfiguredPlugin
    from ..store.log_store import LogStore

__all__ = ["GossipContext", "TransportLink", "dialer_for", "heads_digest", "transport_links"]

log = logging.getLogger("lichen.mesh")


def heads_digest(store: LogStore) -> str:
    """A short digest of every feed's head: equal digests, nothing new to fetch."""
    digest = hashlib.blake2b(digest_size=8)
    for head in store.heads():
        digest.update(head.author + head.seq.to_bytes(8, "big"))
    return digest.hexdigest()


@dataclass
class GossipContext:
    """The :class:`~agent.link_api.TransportContext` a transport gets."""

    name: str
    log: logging.Logger
    node: NodeId
    digest: Callable[[], str]
    #: the mule exchange's HttpServer, once it serves a transport's links in
    #: mule mode (``[mule] ble``); a transport that has such links reads it
    mule: Any = None

    @property
    def node_id(self) -> str:
        return str(self.node)

    def heads_digest(self) -> str:
        return self.digest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TransportLink:
    """One transport instance and its state: ``starting``, ``running``,
    ``retrying`` (the last start failed; ``error`` says why) or ``stopped``.
    ``make`` builds the plugin object for each attempt (:meth:`configured` makes
    a fresh one each time; :meth:`wrap` reuses a ready-made one)."""

    def __init__(
        self, name: str, plugin: str, cls: type[Transport], make: Callable[[], Transport]
    ) -> None:
        self.name, self.plugin, self.cls, self.make = name, plugin, cls, make
        self.scheme: str = cls.scheme
        self.fresh = True  # make() builds a new object: a failed one is closed
        self.transport: Transport | None = None
        self.context: TransportContext | None = None  # a configured one's
        self.state = "starting"
        self.error: str | None = None
        self.failures = 0
        self.retry_at_ms: int | None = None
        self.retry_in = 0.0
        self.started_ms: int | None = None
        self.backoff = Backoff(first=1.0, limit=60.0)

    @classmethod
    def configured(cls, link: ConfiguredPlugin, context: TransportContext) -> TransportLink:
        """A configured instance: a fresh plugin object for every attempt."""
        made = cls(link.name, link.plugin, link.cls, lambda: link.cls(link.config, context))
        made.context = context
        return made

    @classmethod
    def wrap(cls, transport: Transport) -> TransportLink:
        """An object built by the caller (tests, an embedding program)."""
        name = getattr(transport.config, "name", type(transport).__name__)
        link = cls(name, type(transport).__name__, type(transport), lambda: transport)
        link.fresh = False
        return link

    @property
    def running(self) -> bool:
        return self.state == "running" and self.transport is not None

    def parse(self, address: str) -> LinkAddress:
        """``address`` parsed by this link's plugin (AddressError if it is not its own)."""
        return self.cls.parse_address(address)

    async def start(self) -> bool:
        """One attempt: a fresh plugin object, started. False (and the error kept)
        if it failed; the failed object is closed."""
        transport = self.make()
        try:
            await transport.start()
        except Exception as exc:
            self.failures += 1
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "retrying"
            self.retry_in = self.backoff.next()
            self.retry_at_ms = _now_ms() + int(self.retry_in * 1000)
            if self.fresh:
                try:
                    await transport.close()
                except Exception:  # a half-started plugin may fail to close too
                    log.debug("closing %s after a failed start", self.name, exc_info=True)
            return False
        self.transport, self.state, self.error = transport, "running", None
        self.started_ms, self.retry_at_ms = _now_ms(), None
        self.backoff.reset()
        return True

    async def keep_starting(self, on_running: Callable[[TransportLink], Awaitable[None]]) -> None:
        """Retry :meth:`start` with backoff until it works, then hand the link to
        ``on_running``. Cancelled when the node stops."""
        while self.state != "running":
            event(
                log, "transport failed to start; will retry", logging.WARNING,
                transport=self.name, error=self.error, attempt=self.failures,
                retry_in=round(self.retry_in, 1),
            )  # fmt: skip
            await asyncio.sleep(self.retry_in)
            if await self.start():
                event(log, "transport started", transport=self.name, after=self.failures)
                await on_running(self)

    async def close(self) -> None:
        transport, self.transport = self.transport, None
        self.state = "stopped"
        if transport is not None:
            try:
                await transport.close()
            except Exception:
                log.warning("transport %s failed to close", self.name, exc_info=True)

    def status(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "name": self.name,
            "plugin": self.plugin,
            "state": self.state,
            "address": getattr(self.transport, "address", None),
            "error": self.error,
            "failures": self.failures,
            "retry_at_ms": self.retry_at_ms,
            "since_ms": self.started_ms,
        }


def dialer_for(links: Sequence[TransportLink], address: str) -> TransportLink | None:
    """The first running link whose scheme is ``address``'s."""
    scheme = address.partition("://")[0]
    return next((link for link in links if link.running and link.scheme == scheme), None)


def transport_links(
    links: Sequence[ConfiguredPlugin], me: NodeId, reader: LogStore
) -> list[TransportLink]:
    """A running node's transport instances, each with its context: the node's
    id, and the digest of the heads ``reader`` holds at each call."""
    return [
        TransportLink.configured(
            link,
            GossipContext(
                link.name, logging.getLogger(f"lichen.transport.{link.name}"), me,
                lambda: heads_digest(reader),
            ),
        )
        for link in links
    ]  # fmt: skip
