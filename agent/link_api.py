"""The transport and uplink plugin interfaces (re-exported by :mod:`agent.plugin_api`).

**Transports** (entry-point group ``lichen.transports``) are radio back ends:
TCP over Wi-Fi, BLE, a serial line. A transport finds peers and opens
reliable byte streams to them; the agent runs its encrypted channel and the
sync protocol over any :class:`Stream`, so a transport knows nothing about
entries. **Uplinks** (``lichen.uplinks``) forward entries the cloud has not
acknowledged, and hand back the cloud's signed acknowledgements.

Both follow the sensor plugin conventions: a frozen ``Config`` dataclass is
the schema of their ``[[transports.NAME]]`` / ``[[uplinks.NAME]]`` tables,
one object per table, and a failure restarts the instance with backoff
(:class:`Backoff`, re-exported here for a plugin's own retries; with
:func:`cancel_and_wait` to stop a plugin's own tasks). Unlike
sensors they are asynchronous: they run on the agent's event loop and must not
block it (hand blocking work to a thread).

A minimal transport over plain TCP, for illustration::

    class TcpTransport(Transport):
        scheme = "tcp"

        async def connect(self, address: str) -> Stream:
            parsed = self.parse_address(address)
            return AsyncioStream(*await asyncio.open_connection(parsed.host, parsed.port))

**Addresses** are ``scheme://…`` text. Each plugin parses its own with
:meth:`Transport.parse_address` / :meth:`Uplink.parse_address`: the one parser
of its scheme, used by its configuration checks, by the command line
(``lichen run --listen/--peer/--uplink``, ``lichen sync``) and by the plugin
itself. :meth:`Transport.config_for` / :meth:`Uplink.config_for` turn an
address given on the command line into an instance's configuration, so the
agent never writes a plugin's own keys.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from .aio import cancel_and_wait
from .backoff import Backoff
from .errors import AddressError, PluginError
from .extras import Requirements
from .schema import setting

__all__ = [
    "NEW_CONTACT_S",
    "Backoff",
    "LinkAddress",
    "PeerSighting",
    "SensorReading",
    "Stream",
    "Transport",
    "TransportConfig",
    "TransportContext",
    "Uplink",
    "UplinkConfig",
    "UplinkContext",
    "cancel_and_wait",
]


@dataclass(frozen=True)
class LinkAddress:
    """A parsed link address: ``tcp://192.168.1.20:7400`` is scheme ``tcp``, host
    ``192.168.1.20``, port 7400. ``host`` is what names the other machine (the
    agent limits handshakes per host); ``port`` is None where the scheme has
    none. :attr:`url` is the canonical text (IPv6 hosts bracketed before a port).
    """

    scheme: str
    host: str
    port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if self.port is not None and ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port is None else f":{self.port}")

    def __str__(self) -> str:
        return self.url


def _plain_address(address: str, schemes: Sequence[str], kind: str) -> LinkAddress:
    """The default parser: ``SCHEME://REST`` with one of ``schemes`` and a non-empty
    ``REST`` (kept whole as the host). :class:`~agent.errors.AddressError` says
    what is wrong."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in schemes or not rest or any(c.isspace() for c in rest):
        wanted = " or ".join(f"{s}://ADDRESS" for s in schemes) or "SCHEME://ADDRESS"
        raise AddressError(address, f"is not a {kind} address", f"write {wanted}")
    return LinkAddress(scheme, rest)


_C = TypeVar("_C")


def _default_config(cls: type[_C], name: str, base: Any) -> _C:
    """``base`` renamed, or the schema's defaults (an error names a required key)."""
    if isinstance(base, cls):
        return dataclasses.replace(base, name=name)  # type: ignore[type-var]
    from .schema import build

    return build(cls, {"name": name}, table=f"the {name!r} instance", file="command line")


class Stream(Protocol):
    """A reliable, ordered byte stream to one peer, as every transport provides it.

    ``send`` waits until the transport has taken all the bytes (that is the
    back-pressure). ``send_eof`` half-closes: nothing more will be sent, and
    once the peer has read everything its ``receive`` returns ``b""``; receiving
    still works. ``receive`` returns between 1 and ``max_bytes`` bytes, or
    ``b""`` once the peer has half-closed or closed. ``close`` ends both
    directions and is idempotent. A send after ``send_eof`` or ``close``, or on a
    link that broke, raises :class:`~agent.errors.TransportError`; a receive on a
    link that broke abruptly raises it too. ``max_frame_hint`` is the largest
    write that travels as one unit (a BLE ATT MTU minus 3, a TCP segment):
    protocols size their frames by it. ``agent.transport.check_transport`` is
    the conformance suite every implementation passes."""

    @property
    def max_frame_hint(self) -> int: ...

    @property
    def peer(self) -> str:
        """The peer's transport address, e.g. ``tcp://192.168.1.20:7400``."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def send_eof(self) -> None: ...

    async def receive(self, max_bytes: int = 65536) -> bytes: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class PeerSighting:
    """A peer a transport noticed (an mDNS record, a BLE advertisement).

    ``node_id`` and ``heads_digest`` are what the advertisement claims, unverified
    until a channel is open; a digest equal to the last sync's means there is
    nothing new to fetch."""

    address: str
    seen_at_ms: int
    node_id: str | None = None
    heads_digest: str | None = None


class TransportContext(Protocol):
    """What the agent gives a transport."""

    name: str
    log: logging.Logger

    @property
    def node_id(self) -> str:
        """This node's id, to advertise."""
        ...

    def heads_digest(self) -> str:
        """A short digest of the heads this node holds, to advertise."""
        ...


@dataclass(frozen=True, kw_only=True)
class TransportConfig:
    """Keys every transport instance accepts; plugins subclass it."""

    name: str = setting(help='the instance name, e.g. name = "wifi"')


#: a transport that dials on sightings reports a node again when it is heard
#: after this many seconds unheard: a new contact, which the agent dials at
#: once even after failed dials (its backoff is for a node that stays in range)
NEW_CONTACT_S = 5.0


class Transport(Requirements):
    """Base class of transport plugins."""

    Config: ClassVar[type[TransportConfig]] = TransportConfig
    #: the address scheme this transport serves, e.g. ``"tcp"`` for ``tcp://host:port``
    scheme: ClassVar[str] = ""
    #: a radio where a connection costs (BLE): the agent dials this transport's
    #: peers again only when a sighting says there is something to exchange,
    #: never on a timer (its sightings carry that judgement; one heard again
    #: after :data:`NEW_CONTACT_S` unheard is reported again)
    dial_on_sighting: ClassVar[bool] = False

    def __init__(self, config: TransportConfig, context: TransportContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def parse_address(cls, address: str, *, listen: bool = False) -> LinkAddress:
        """Check an address of this scheme and return it parsed (``url`` is its
        canonical form); ``listen``: an address to listen at rather than to dial.
        Raise :class:`~agent.errors.AddressError` quoting the address and giving
        the fix. The default accepts any ``SCHEME://ADDRESS``; a plugin overrides
        it with its scheme's rules and uses it for its own configuration keys."""
        return _plain_address(address, (cls.scheme,), f"{cls.scheme or 'transport'}://")

    @classmethod
    def config_for(
        cls, name: str | None, address: LinkAddress | None, base: Any = None
    ) -> TransportConfig:
        """The configuration of an instance the command line asks for: one that
        listens at ``address`` (``lichen run --listen``), or — with None — one
        that only dials out (``--peer`` with no configured instance, ``lichen
        sync``). ``base`` is the first configured instance of this plugin, if
        any, whose other settings are kept; ``name`` is the instance's name (None:
        the plugin's choice, the scheme by default). The default has no listen
        address to set, and otherwise keeps ``base`` (or the defaults)."""
        if address is not None:
            raise PluginError(
                f"transport {cls.__name__} takes no listen address from the command line "
                f"({address.url}). Fix: configure it in a [[transports.…]] table"
            )
        return _default_config(cls.Config, name or cls.scheme, base)

    async def start(self) -> None:
        """Begin listening and advertising (if this transport does)."""

    async def accept(self) -> Stream:
        """Wait for the next incoming stream. A transport that never listens
        leaves this as is."""
        raise NotImplementedError(f"{type(self).__name__} accepts no incoming streams")

    async def connect(self, address: str) -> Stream:
        """Open a stream to ``address`` (``<scheme>://…``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot connect")

    def sightings(self) -> AsyncIterator[PeerSighting]:
        """Peers noticed nearby, as they are noticed (none by default)."""
        return _no_sightings()

    def heads_changed(self) -> None:
        """This node's heads changed: refresh what is advertised (if anything is).
        Called often; a transport rate-limits its own announcements."""

    async def close(self) -> None:
        """Stop listening and release the radio."""


async def _no_sightings() -> AsyncIterator[PeerSighting]:
    nothing: tuple[PeerSighting, ...] = ()
    for sighting in nothing:
        yield sighting


@dataclass(frozen=True)
class SensorReading:
    """One reading of this node's own sensors, as it was stored (for plain
    JSON state and Home Assistant). ``fields`` describes each field:
    ``unit``, ``device_class``, ``resolution`` where the sensor declared them."""

    collection: str
    sensor: str
    plugin: str
    ts_ms: int
    values: Mapping[str, bool | int | float | str]
    fields: Mapping[str, Mapping[str, object]]
    quality: str | None = None


class UplinkContext(Protocol):
    """What the agent gives an uplink: its outbox, its inbox, this node's readings.

    Delivery state lives in the log, never in the uplink: an uplink may crash,
    reconnect or restart at any moment and simply asks for the outbox again."""

    name: str
    log: logging.Logger

    @property
    def node_id(self) -> str: ...

    @property
    def node_name(self) -> str:
        """The node's name for people (``[node] name``; empty when unset)."""
        ...

    def outbox(self, max_bytes: int) -> AsyncIterator[Sequence[bytes]]:
        """Batches of encoded entries (each batch's CBOR envelope at most
        ``max_bytes``, see :func:`agent.uplink.wire.encode_entry_batch`) that the cloud
        has not acknowledged, high priorities first with a share kept for low
        ones. Each call starts a fresh pass from the acknowledgements held — call
        it again after every (re)connect; within one pass an entry comes again
        only if no acknowledgement covered it in ``resend_after`` seconds. The
        iterator waits while there is nothing to send."""
        ...

    async def receive(self, entries: Sequence[bytes]) -> int:
        """Hand over entries that came back (the cloud's signed acknowledgements):
        each is verified and stored like any other entry, acknowledgements take
        effect at once. Returns how many were good; bad ones are logged with the
        reason and dropped."""
        ...

    def readings(self) -> AsyncIterator[SensorReading]:
        """This node's own readings as they are stored (the latest one of each
        collection when the consumer falls behind)."""
        ...

    def set_connected(self, connected: bool, detail: str | None = None) -> None:
        """Report the link state shown by ``lichen status`` (``detail``: the
        broker address, or why the link is down)."""
        ...


@dataclass(frozen=True, kw_only=True)
class UplinkConfig:
    """Keys every uplink instance accepts; plugins subclass it."""

    name: str = setting(help='the instance name, e.g. name = "cloud"')


class Uplink(Requirements):
    """Base class of uplink plugins."""

    Config: ClassVar[type[UplinkConfig]] = UplinkConfig
    #: the address schemes this uplink serves, e.g. ``("mqtt", "mqtts")``
    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: UplinkConfig, context: UplinkContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def parse_address(cls, address: str) -> LinkAddress:
        """Check an address of one of :attr:`schemes`; as :meth:`Transport.parse_address`."""
        return _plain_address(address, cls.schemes, "/".join(f"{s}://" for s in cls.schemes))

    @classmethod
    def config_for(cls, name: str | None, address: LinkAddress, base: Any = None) -> UplinkConfig:
        """The configuration of an instance that connects to ``address``
        (``lichen run --uplink``); ``base`` as in :meth:`Transport.config_for`.
        The default takes no address."""
        raise PluginError(
            f"uplink {cls.__name__} takes no address from the command line ({address.url}). "
            "Fix: configure it in an [[uplinks.…]] table"
        )

    async def run(self) -> None:
        """Forward the outbox and pass acknowledgements back, until cancelled;
        with no link, wait and retry rather than fail."""
        raise NotImplementedError(f"{type(self).__name__} implements no run()")
