"""What the BLE tests share: transports on an in-process emulated link."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from agent.identity import Identity
from agent.plugin_api import Stream
from agent.testing import FakeTransportContext
from agent.transport import check_transport
from lichen_ble import BleConfig, BleTransport
from lichen_ble.controllers import end_connections

_links = itertools.count()


def local_link(link: Any = None) -> str:
    """``link`` (by default a fresh in-process Bumble ``LocalLink``) as an ``hci`` value."""
    from bumble.link import LocalLink

    from lichen_ble.bumble_radio import register_local_link

    name = f"test-{next(_links)}"
    register_local_link(name, link if link is not None else LocalLink())
    return f"local:{name}"


def make_transport(
    hci: str | None, seed: int, digest: str = "00" * 8, **config: Any
) -> BleTransport:
    identity = Identity(bytes([seed]) * 32)
    settings: dict[str, Any] = {"name": "ble", "hci": hci, **config}
    node_id = str(identity.node_id)
    context = FakeTransportContext(node_id, digest=digest, name=node_id[:12])
    return BleTransport(BleConfig(**settings), context)


async def conformance(board: BleTransport, phone: BleTransport, large: int) -> None:
    """Start both, pass the transport conformance suite over links the phone
    dials to the board by node id (``large`` bytes for the bulk checks), close."""
    await board.start()
    await phone.start()
    try:

        async def make_pair() -> tuple[Stream, Stream]:
            outgoing = await phone.connect(f"ble://{board.context.node_id}")
            return outgoing, await board.accept()

        report = await check_transport(make_pair, large=large)
        assert not report.skipped and len(report.passed) == 13, report
    finally:
        await phone.close()
        await board.close()


class OutOfRange:
    """A phone walking out of a board's range on an in-process emulated radio:
    once the controller at ``address`` has sent ``budget`` bytes of ACL data
    (L2CAP, 4 bytes of header counted per PDU), the PDU over the budget and
    everything after it is lost and both ends see the link drop as a
    supervision timeout does (reason 0x08). Then the next contact is free; or,
    with ``stay_away``, the board is not heard at all (no advertisement, no
    connection) until :meth:`back`."""

    def __init__(self, link: Any, address: str, budget: int, *, stay_away: bool = False) -> None:
        self.link, self.address, self.budget = link, address.upper(), budget
        self.stay_away = stay_away
        self.sent = 0
        self.cut = False
        self.away = False
        self._send, self._advertise = link.send_acl_data, link.send_advertising_pdu
        link.send_acl_data = self._counting
        link.send_advertising_pdu = self._advertising

    def _is_board(self, controller: Any) -> bool:
        return bool(controller.random_address.to_string(False).upper() == self.address)

    def _counting(self, sender: Any, destination: Any, transport: Any, data: bytes) -> None:
        if self.away and self._is_board(sender):
            return
        if not self.cut and self._is_board(sender):
            if self.sent + len(data) + 4 > self.budget:
                self.cut = True
                self.away = self.stay_away
                end_connections(sender)
                return
            self.sent += len(data) + 4
        self._send(sender, destination, transport, data)

    def _advertising(self, sender: Any, packet: Any) -> None:
        if not (self.away and self._is_board(sender)):
            self._advertise(sender, packet)

    def leave(self) -> None:
        """The board goes out of range now: its links drop, it is heard no more."""
        self.away = True
        for controller in list(self.link.controllers):
            if self._is_board(controller):
                end_connections(controller)

    def back(self) -> None:
        """The board is in range again."""
        self.away = False


READ_REQUEST, WRITE_REQUEST, WRITE_COMMAND = 0x0A, 0x12, 0x52  # ATT opcodes


class AttOnAir:
    """The ATT PDUs on an in-process emulated radio: once :meth:`arm` ed, the next
    PDU with ``opcode`` (every one, with ``every``) is lost, and with ``cut``
    the connection it was sent on ends with it, as a radio going out of range
    ends it (reason 0x08). ``hit`` is set when one was. Only a central sends
    requests and write commands: the opcodes above are the phone's."""

    def __init__(self, link: Any) -> None:
        self.opcode: int | None = None
        self.cut = self.every = False
        self.hit = asyncio.Event()
        self._send = link.send_acl_data
        link.send_acl_data = self._sending

    def arm(self, opcode: int | None, *, cut: bool = False, every: bool = False) -> None:
        self.opcode, self.cut, self.every = opcode, cut, every
        self.hit.clear()

    def _sending(self, sender: Any, destination: Any, transport: Any, data: bytes) -> None:
        att = len(data) > 4 and data[2:4] == b"\x04\x00"
        if att and self.opcode is not None and data[4] == self.opcode:
            self.opcode = self.opcode if self.every else None
            if self.cut:
                end_connections(sender)
            self.hit.set()
            return
        self._send(sender, destination, transport, data)
