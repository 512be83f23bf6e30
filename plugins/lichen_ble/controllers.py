"""Emulated BLE controllers for hosts in other processes: ``lichen ble controllers``.

Each endpoint (``tcp-server:HOST:PORT`` or ``unix-server:PATH``) serves
emulated Bumble controllers on one shared radio (a ``LocalLink``); a node
reaches one with ``hci = "tcp-client:HOST:PORT"`` (or ``unix:PATH``). Unlike
``python -m bumble.apps.controllers`` (exactly two endpoints, and a host that
dies leaves its peers a connection that never ends and a ghost that keeps
advertising), every host connection gets a fresh controller, and when a host
goes its peers see the link drop (reason 0x08, connection timeout) and its
advertising stops, so the host can come back and connect again::

    lichen ble controllers tcp-server:127.0.0.1:7401 tcp-server:127.0.0.1:7402
    python -m lichen_ble.controllers unix-server:/run/lichen-ble-a unix-server:/run/lichen-ble-b

``rate`` paces each controller's data (bytes per second, as a GATT link's
throughput is bounded); ``loss`` drops that share of write-without-response
and notification PDUs, as an overflowing stack does. Nothing else is lost:
a connection's link layer acknowledges and resends every data PDU, so ATT
requests and responses (MTU exchange, discovery, reads, subscribing) always
arrive, and connection set-up fails only as a real controller reports it
(see :func:`make_controller`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Endpoint",
    "end_connections",
    "local_device",
    "make_controller",
    "make_link",
    "parse_endpoint",
    "serve",
]

CONNECTION_TIMEOUT = 0x08
_ATT_CID = 0x0004
_WRITE_COMMAND, _NOTIFICATION = 0x52, 0x1B
_FIRST_EVENTS = 6  # connection intervals a new connection waits for its peer's first packet


class Endpoint:
    """One place hosts connect to: ``tcp-server:HOST:PORT`` or ``unix-server:PATH``."""

    def __init__(self, kind: str, host: str = "", port: int = 0, path: str = "") -> None:
        self.kind, self.host, self.port, self.path = kind, host, port, path

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"tcp-server:{self.host}:{self.port}"
        return f"unix-server:{self.path}"


def parse_endpoint(text: str) -> Endpoint:
    """``tcp-server:HOST:PORT`` (``_`` for every interface) or ``unix-server:PATH``;
    :class:`ValueError` says what is wrong."""
    kind, _, rest = text.partition(":")
    if kind == "tcp-server":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"{text!r}: write tcp-server:HOST:PORT, e.g. tcp-server:127.0.0.1:7401"
            )
        return Endpoint("tcp", "0.0.0.0" if host == "_" else host, int(port))
    if kind == "unix-server" and rest:
        return Endpoint("unix", path=rest)
    raise ValueError(f"{text!r}: write tcp-server:HOST:PORT or unix-server:PATH")


def make_link(rate: float | None = None, loss: float = 0.0, seed: int = 0) -> Any:
    """A Bumble ``LocalLink``, paced to ``rate`` bytes/s per controller and losing
    ``loss`` of the ATT write commands and notifications (see the module)."""
    from bumble.link import LocalLink

    class ShapedLink(LocalLink):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.free_at: dict[int, float] = {}
            self.rng = random.Random(seed)
            self.dropped = 0

        def send_acl_data(self, sender: Any, destination: Any, transport: Any, data: bytes) -> None:
            cid = int.from_bytes(data[2:4], "little") if len(data) >= 4 else -1
            unacknowledged = len(data) > 4 and data[4] in (_WRITE_COMMAND, _NOTIFICATION)
            if loss and cid == _ATT_CID and unacknowledged and self.rng.random() < loss:
                self.dropped += 1
                return
            if rate is None:
                LocalLink.send_acl_data(self, sender, destination, transport, data)
                return
            loop = asyncio.get_running_loop()
            start = max(loop.time(), self.free_at.get(id(sender), 0.0))
            self.free_at[id(sender)] = start + (len(data) + 4) / rate
            loop.call_at(
                self.free_at[id(sender)],
                LocalLink.send_acl_data, self, sender, destination, transport, data,
            )  # fmt: skip

    return ShapedLink()


def make_controller(name: str, link: Any, **options: Any) -> Any:
    """An emulated controller on ``link``: Bumble's ``Controller``, with two
    of its link-layer shortcuts made as the Core specification says.

    LE Create Connection Cancel (Vol 4, Part E, 7.8.13): the attempt is
    dropped and an LE Connection Complete with status 0x02 follows. Bumble's
    own answers success and keeps the attempt: a host whose connect timed out
    waited for that event forever, or, cancelled, got a connection when the
    device was next heard, and every connect meanwhile was refused as one too
    many.

    A CONNECT_IND the advertiser did not take (Vol 6, Part B, 4.5.2): a
    central whose first connection events go unanswered for six connection
    intervals ends the connection with reason 0x3E (Connection Failed to be
    Established). Bumble's central counts itself connected the moment it sends
    the CONNECT_IND; when the advertiser had stopped advertising before it
    came (between the advertisement the central answered and the CONNECT_IND,
    the advertiser's host restarted advertising), the advertiser ignored it,
    and the central kept a connection no one was at the other end of: every
    ATT request on it went unanswered, for ever."""
    from bumble import hci
    from bumble.controller import Controller

    class CancellingController(Controller):
        def create_le_connection(self, peer_address: hci.Address) -> None:
            pending = self.pending_le_connection
            super().create_le_connection(peer_address)
            if pending is None or self.pending_le_connection is not None:
                return  # no connection made now
            connection = self.le_connections[pending.peer_address]
            if isinstance(pending, hci.HCI_LE_Extended_Create_Connection_Command):
                interval = pending.connection_interval_mins[0]  # one value per PHY
            else:
                interval = pending.connection_interval_min
            asyncio.get_running_loop().call_later(
                _FIRST_EVENTS * interval * 1.25e-3, self._check_established, connection
            )

        def _check_established(self, connection: Any) -> None:
            """Six intervals after the CONNECT_IND: the peer answered, or the
            connection failed to be established."""
            current: Any = self.le_connections.get(connection.peer_address)
            if current is not connection:
                return  # it ended already
            for controller in list(self.link.controllers):  # a LocalLink's
                if controller is not self and connection.self_address in controller.le_connections:
                    return
            failed = hci.HCI_ErrorCode.CONNECTION_FAILED_TO_BE_ESTABLISHED_ERROR
            self.on_le_disconnected(connection, failed)

        def on_hci_le_create_connection_cancel_command(
            self, command: hci.HCI_LE_Create_Connection_Cancel_Command
        ) -> hci.HCI_StatusReturnParameters:
            pending = self.pending_le_connection
            if pending is None:
                return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
            self.pending_le_connection = None
            failed = hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0, role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address_type, peer_address=pending.peer_address,
                connection_interval=0, peripheral_latency=0, supervision_timeout=0,
                central_clock_accuracy=0,
            )  # fmt: skip
            asyncio.get_running_loop().call_soon(self.send_hci_packet, failed)  # after this reply
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    return CancellingController(name, link=link, **options)


def local_device(name: str, address: Any, link: Any) -> Any:
    """A Bumble ``Device`` whose host drives an emulated controller on ``link``
    in this process."""
    from bumble.device import Device
    from bumble.host import Host
    from bumble.transport.common import AsyncPipeSink

    controller = make_controller(name, link)
    return Device(name=name, address=address, host=Host(controller, AsyncPipeSink(controller)))


class _Sink:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def on_packet(self, packet: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(bytes(packet))


def end_connections(controller: Any, *, tell_host: bool = True) -> None:
    """End every connection of ``controller`` as a radio going out of range does:
    its peers (and, with ``tell_host``, its own host) see a connection timeout."""
    from bumble import ll

    for connection in list(controller.le_connections.values()):
        with contextlib.suppress(Exception):
            connection.send_ll_control_pdu(ll.TerminateInd(CONNECTION_TIMEOUT))
        if tell_host:
            controller.on_le_disconnected(connection, CONNECTION_TIMEOUT)
    controller.le_connections.clear()


def _forget(link: Any, controller: Any) -> None:
    """The host is gone: its peers see a connection timeout, its adverts stop."""
    with contextlib.suppress(Exception):
        controller.le_legacy_advertiser.stop()
    for advertising_set in list(getattr(controller, "advertising_sets", {}).values()):
        if getattr(advertising_set, "timer_handle", None):
            advertising_set.timer_handle.cancel()
    end_connections(controller, tell_host=False)
    with contextlib.suppress(Exception):
        link.remove_controller(controller)


async def serve(endpoints: Sequence[Endpoint], link: Any, *, log: Any = print) -> list[Any]:
    """Start serving ``endpoints`` on ``link``; returns the asyncio servers."""
    from bumble.transport.common import StreamPacketSource

    servers = []
    for index, endpoint in enumerate(endpoints):

        async def on_host(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int = index
        ) -> None:
            source = StreamPacketSource()
            controller = make_controller(f"C{index}", link, host_source=source,
                                         host_sink=_Sink(writer))  # fmt: skip
            log(f"controller {index}: host connected")
            try:
                while data := await reader.read(65536):
                    source.data_received(data)
            except (ConnectionError, OSError):
                pass
            finally:
                _forget(link, controller)
                writer.close()
                log(f"controller {index}: host gone")

        if endpoint.kind == "tcp":
            server = await asyncio.start_server(on_host, endpoint.host, endpoint.port)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(endpoint.path)
            server = await asyncio.start_unix_server(on_host, endpoint.path)
        servers.append(server)
        log(f"controller {index} at {endpoint}")
    return servers


async def run(
    endpoints: Sequence[Endpoint], *, rate: float | None = None, loss: float = 0.0, seed: int = 0
) -> None:
    """Serve until cancelled."""
    link = make_link(rate, loss, seed)
    servers = await serve(endpoints, link, log=lambda line: print(line, flush=True))
    try:
        await asyncio.gather(*(server.serve_forever() for server in servers))
    finally:
        for server in servers:
            server.close()


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lichen_ble.controllers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("endpoints", nargs="+", metavar="tcp-server:HOST:PORT|unix-server:PATH")
    parser.add_argument("--rate", type=float, default=None, help="bytes/s per controller")
    parser.add_argument("--loss", type=float, default=0.0, help="share of PDUs dropped")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        endpoints = [parse_endpoint(e) for e in args.endpoints]
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(endpoints, rate=args.rate, loss=args.loss, seed=args.seed))


if __name__ == "__main__":
    main(sys.argv[1:])
