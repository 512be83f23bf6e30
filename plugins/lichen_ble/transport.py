"""The BLE transport: advertise and accept, scan and dial, over one radio."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from agent import NodeId
from agent.errors import ConfigError, TransportError
from agent.http_stream import serve_stream
from agent.plugin_api import (
    LinkAddress,
    PeerSighting,
    Stream,
    Transport,
    TransportConfig,
    TransportContext,
    require_module,
)
from agent.transport import SightingFeed

from .config import BleConfig, is_device_address, parse_address
from .nearby import Nearby, NearbyDevices
from .radio import RadioHooks, Tasks
from .segments import CloseCode, Mode
from .service import (
    HINT_SIZE,
    Advert,
    AdvertError,
    Info,
    advertising_data,
    digest_bytes,
    parse_advertising_data,
)
from .stream import GattStream

__all__ = ["BleTransport", "Nearby"]

_INFO_RETRY_S = 60.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BleTransport(Transport):
    """Streams over BLE: Lichen's GATT service ([ble.md](docs/ble.md)) on a Bumble
    host, or on BlueZ (bleak and bluezero)::

        [[transports.ble]]
        name = "ble"
        hci = "usb:0"            # or: backend = "bluez" (adapter = "hci0")

    With ``listen`` it advertises (service data: node hint, heads digest, room)
    and accepts links; with ``scan`` it reports the Lichen nodes it hears as
    sightings — only those whose heads digest differs from this node's, and
    of two nodes that both dial, only the one with the larger hint (the smaller
    dials) — and dials ``ble://NODE-ID`` by the advertised hint. A device whose
    node it does not know yet has its info read once."""

    Config = BleConfig
    scheme = "ble"
    dial_on_sighting = True
    config: BleConfig

    @classmethod
    def parse_address(cls, address: str, *, listen: bool = False) -> LinkAddress:
        return parse_address(address, listen=listen)

    @classmethod
    def requires(cls, config: TransportConfig) -> Mapping[str, str]:
        if not isinstance(config, BleConfig):
            raise TypeError(f"{cls.__name__}.requires needs its own Config, not {config!r}")
        if config.backend == "bumble":
            return {"bumble": "lichen[ble-hci]"}
        needs = {"bleak": "lichen[ble]"}
        return needs | {"bluezero": "lichen[ble]"} if config.listen else needs

    @classmethod
    def config_for(
        cls, name: str | None, address: LinkAddress | None, base: Any = None
    ) -> BleConfig:
        """``--listen ble://`` advertises and accepts; with no address (``--peer``
        alone, ``lichen sync``) the instance only dials. Every other key is
        ``base``'s (the first ``[[transports.ble]]`` table)."""
        name = name or "ble"
        if not isinstance(base, BleConfig):
            raise ConfigError(
                "ble:// on the command line needs a radio to use",
                key="[[transports.ble]] hci",
                fix='add a [[transports.ble]] table to lichen.toml with hci = "usb:0" (a '
                'dongle) or "tcp-client:127.0.0.1:7401" (an emulated controller)',
            )
        return dataclasses.replace(base, name=name, listen=address is not None)

    def __init__(self, config: BleConfig, context: TransportContext) -> None:
        super().__init__(config, context)
        self.node = b""  # this node's key, from the context at start
        self.radio: Any = None
        self.nearby = NearbyDevices()
        self._incoming: asyncio.Queue[GattStream | None] = asyncio.Queue(config.max_connections)
        self._feed = SightingFeed()
        self._resolving: set[str] = set()
        self._tasks = Tasks()
        self._advertised_at = 0.0
        self._heard = asyncio.Event()
        self._closed = False
        self._mule: Any = None  # the mule exchange's HttpServer

    address = "ble://"

    # --------------------------------------------------------------- running

    async def start(self) -> None:
        if self._closed:
            raise TransportError(f"transport {self.config.name!r} is closed")
        try:
            self.node = NodeId.parse(self.context.node_id).key
        except ValueError as exc:
            raise TransportError(
                f"cannot advertise node id {self.context.node_id!r}: {exc}"
            ) from exc
        self.radio = self._make_radio()
        await self.radio.start()
        if self.config.listen:
            await self._advertise()
        if self.config.scan:
            await self.radio.scan(True)
        self.context.log.info(
            "BLE on %s: %s", self.config.radio,
            ", ".join(r for r, on in (("advertising", self.config.listen),
                                      ("scanning", self.config.scan)) if on) or "idle",
        )  # fmt: skip

    def _make_radio(self) -> Any:
        """The back end the configuration names, imported only now."""
        hooks = RadioHooks(
            info=self._info,
            on_stream=self._accepted,
            on_advert=self._heard_advert,
            on_change=lambda: self._spawn(self._advertise()),
            log=self.context.log,
            link_options={"link_timeout": self.config.link_timeout},
            on_mule=self._mule_link,
            serves_mule=lambda: self._mule_server() is not None,
        )
        if self.config.backend == "bluez":
            require_module("bleak", install="'lichen[ble]'", purpose="the bluez BLE back end")
            if self.config.listen:
                require_module("bluezero", install="'lichen[ble]'",
                               purpose="advertising with the bluez BLE back end")  # fmt: skip
            from .bluez_radio import BluezRadio

            return BluezRadio(self.config.adapter, hooks, listen=self.config.listen)
        require_module("bumble", install="'lichen[ble-hci]'", purpose="the bumble BLE back end")
        from .bumble_radio import BumbleRadio

        return BumbleRadio(self.config.hci or "", self.node, hooks)

    def _advert(self) -> Advert:
        limit = self.config.max_connections
        if self.radio is not None:
            limit = min(limit, self.radio.max_incoming)
        room = limit - (self.radio.incoming if self.radio else 0)
        return Advert(
            node_hint=self.node[:HINT_SIZE],
            digest=digest_bytes(self.context.heads_digest()),
            room=max(0, min(15, room)),
            dials=self.config.scan,
        )

    def _info(self) -> bytes:
        digest = digest_bytes(self.context.heads_digest(), 8)
        return Info(node=self.node, digest=digest, room=self._advert().room).encode()

    async def _advertise(self) -> None:
        if self.radio is not None and self.config.listen and not self._closed:
            self._advertised_at = asyncio.get_running_loop().time()
            advert = self._advert()
            await self.radio.advertise(advertising_data(advert) if advert.room else None)

    def heads_changed(self) -> None:
        """Advertise the new digest (at most once per ``announce_interval``), and
        look again at the nodes nearby: one may now lack what we hold."""
        if self._closed or self.radio is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._advertised_at + self.config.announce_interval - loop.time())
        self._spawn(self._advertise_later(delay))
        for nearby in self.nearby.recent(loop.time(), self.config.seen_for):
            nearby.reported = None
            self._consider(nearby)

    async def _advertise_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._advertise()

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    # ------------------------------------------------------------- accepting

    def _accepted(self, stream: GattStream) -> None:
        if self._incoming.full():
            self._spawn(stream.abort("busy"))
            return
        self._incoming.put_nowait(stream)

    def serve_mule(self, server: Any) -> None:
        """Serve the mule exchange's ``HttpServer`` on links opened in mule mode, the
        client being the device address (the agent sets the context's ``mule``
        instead); without one they are refused (CLOSE code 5)."""
        self._mule = server

    def _mule_server(self) -> Any:
        return self._mule or getattr(self.context, "mule", None)

    def _mule_link(self, stream: GattStream) -> None:
        self._spawn(self._serve_mule(stream))

    async def _serve_mule(self, stream: GattStream) -> None:
        try:
            await serve_stream(self._mule_server(), stream, stream.peer)
        finally:  # the server closed it (FIN, CLOSE): the connection goes too
            await stream.abort("the exchange ended", CloseCode.NORMAL)

    async def accept(self) -> Stream:
        if not self.config.listen:  # a node that only dials: nothing ever comes
            raise NotImplementedError(f"transport {self.config.name!r} is not listening")
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)
            raise TransportError(f"transport {self.config.name!r} is closed")
        return stream

    # -------------------------------------------------------------- sighting

    def _heard_advert(self, sighted: Any) -> None:
        try:
            advert = parse_advertising_data(sighted.data)
        except AdvertError:
            return
        if advert is None or advert.node_hint == self.node[:HINT_SIZE]:
            return
        now = asyncio.get_running_loop().time()
        nearby = self.nearby.heard(sighted.address, advert, sighted.rssi, now)
        self._heard.set()
        self._consider(nearby)

    def _consider(self, nearby: Nearby) -> None:
        """Report ``nearby`` as a sighting if there is something to exchange with it
        and it is ours to dial (see the class)."""
        advert = nearby.advert
        if not self.config.scan or advert.room == 0 or nearby.reported == advert.digest:
            return
        own_hint = self.node[:HINT_SIZE]
        if advert.dials and self.config.listen and advert.node_hint < own_hint:
            return  # it dials us
        if advert.digest == digest_bytes(self.context.heads_digest()):
            return  # the same heads: nothing either way
        if nearby.node is None:
            self._resolve(nearby)
            return
        nearby.reported = advert.digest
        self._feed.publish(
            PeerSighting(
                address=f"ble://{NodeId(nearby.node)}",
                seen_at_ms=_now_ms(),
                node_id=str(NodeId(nearby.node)),
                heads_digest=advert.digest.hex(),
            )
        )

    def _resolve(self, nearby: Nearby) -> None:
        now = asyncio.get_running_loop().time()
        failed = nearby.info_failed_at
        if nearby.address in self._resolving or (failed and now - failed < _INFO_RETRY_S):
            return
        self._resolving.add(nearby.address)
        self._spawn(self._read_info(nearby))

    async def _read_info(self, nearby: Nearby) -> None:
        try:
            info = await self.radio.read_info(nearby.address, self.config.connect_timeout)
        except TransportError as exc:
            nearby.info_failed_at = asyncio.get_running_loop().time()
            self.context.log.debug("info of %s unread: %s", nearby.address, exc)
            return
        finally:
            self._resolving.discard(nearby.address)
        if info.node[:HINT_SIZE] == nearby.advert.node_hint:
            nearby.node = info.node
            self._consider(nearby)

    def sightings(self) -> AsyncGenerator[PeerSighting, None]:
        return self._feed.stream()

    # ---------------------------------------------------------------- dialling

    async def connect(self, address: str) -> Stream:
        return await self.dial(address)

    async def dial(self, address: str, mode: Mode = Mode.SYNC) -> GattStream:
        """:meth:`connect` in a link ``mode`` (:meth:`connect` is sync's). Finding
        the device, connecting, the GATT set-up and the link's OPEN share one
        deadline, ``connect_timeout`` from now."""
        if self._closed or self.radio is None:
            raise TransportError(f"transport {self.config.name!r} is not running")
        target = parse_address(address).host
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.connect_timeout
        if is_device_address(target):
            stream: GattStream = await self.radio.dial(target, deadline - loop.time(), mode=mode)
            return stream
        key = NodeId.parse(target).key
        device = await self._find(key, deadline)
        left = deadline - loop.time()
        stream = await self.radio.dial(device.address, left, expect=key, mode=mode)
        device.node = key
        return stream

    async def _find(self, key: bytes, deadline: float) -> Nearby:
        """The device advertising ``key``'s hint, heard within ``seen_for``; scans
        until ``deadline`` (the loop's time) when none was."""
        loop = asyncio.get_running_loop()
        scanning = self.config.scan
        try:
            while True:
                now = loop.time()
                found = self.nearby.advertising(key, now, self.config.seen_for)
                if found is not None:
                    return found
                if now >= deadline:
                    raise TransportError(
                        f"dialling {NodeId(key)} timed out while finding it: no BLE "
                        f"advertisement heard within {self.config.connect_timeout:g} s "
                        "(out of range, or not advertising)"
                    )
                if not scanning:
                    await self.radio.scan(True)
                    scanning = True
                self._heard.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._heard.wait()
        finally:
            if scanning and not self.config.scan:
                await self.radio.scan(False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tasks.cancel()
        if self.radio is not None:
            await self.radio.close()
        while not self._incoming.empty():
            pending = self._incoming.get_nowait()
            if pending is not None:
                await pending.abort("the node is stopping")
        self._incoming.put_nowait(None)
        self._feed.close()
