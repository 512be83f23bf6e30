"""Joining a fleet with an invite: both ends of the exchange over an ``XXpsk3`` channel.

The new node (``lichen fleet join CODE --peer ADDRESS``) dials the inviting
node and opens the channel as initiator with the invite's key; the inviting
node's agent sees a handshake whose first frame announces a pre-shared key
(48 bytes, not 32) and tries every invite it keeps (:class:`JoinService`).
Only the holder of the code completes that handshake: a wrong code fails it
(message 3 does not decrypt), and so the two proven node ids and the 6-digit
code both screens show are bound to the invite.

Then, inside the channel (messages in the project's canonical CBOR)::

    inviter → joiner   {"refused": reason}                 the invite was used or expired; end
    inviter → joiner   {"entries": [raw entry, …]}         the fleet document, in chunks
    inviter → joiner   {"welcome": {"fleet": id, "role": …, "invite": id}}
    joiner  → inviter  {"stored": n}                       then both close

Before it answers, the inviter claims the invite (single use, atomically)
and writes the member-added entry for the joiner's proven node id; the
joiner stores the entries (each verified like any received entry), checks it
is now a member of that fleet, and records the fleet in
``HOME/state/fleet.json``. From then on it syncs like any member; its writes
count once an admin approves it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import encoding
from ..channel import Channel
from ..errors import ChannelError, EncodingError, LichenError
from ..logs import event
from ..store.log_store import InsertOutcome
from .document import COLLECTION, format_fleet_id, op_body
from .invites import Invite, InviteBook, InviteError
from .view import FleetView, write_fleet_file

if TYPE_CHECKING:
    from ..node import Node
    from ..store.log_store import LogStore

__all__ = ["PSK_FIRST_FRAME", "JoinService", "Joined", "join_over"]

log = logging.getLogger("lichen.fleet")

#: the length prefix of an ``XXpsk3`` message 1 (32-byte key + 16-byte tag)
PSK_FIRST_FRAME = (48).to_bytes(2, "big")
CHUNK_BYTES = 256 * 1024
EXCHANGE_TIMEOUT = 30.0


class JoinService:
    """The inviting side, run by the agent of a node in a fleet."""

    def __init__(self, node: Node, view: FleetView, book: InviteBook) -> None:
        self.node, self.view, self.book = node, view, book
        self.joined = 0
        self.refused = 0

    def keys(self) -> list[bytes]:
        """The pre-shared keys to try on a join handshake (every invite kept)."""
        return [invite.psk for invite in self.book.candidates()]

    def _invite_for(self, psk: bytes | None) -> Invite | None:
        return next((i for i in self.book.candidates() if i.psk == psk), None)

    async def serve(self, channel: Channel) -> None:
        """Answer one joiner on an open ``XXpsk3`` channel, then close it."""
        async with channel:
            invite = self._invite_for(channel.psk)
            joiner = channel.peer
            try:
                if invite is None:
                    raise InviteError("the invite is no longer kept here")
                claimed = self.book.claim(invite.id, str(joiner), channel.sas)
            except InviteError as exc:
                self.refused += 1
                event(log, "join refused", logging.WARNING, peer=str(joiner), reason=str(exc))
                await channel.send(encoding.dumps({"refused": str(exc)}))
                return
            add = op_body(
                "add", self.view.fleet, joiner.key, role=claimed.role, groups=list(claimed.groups),
                invite=claimed.id,
            )  # fmt: skip
            await self.node.writer.append(COLLECTION, add)
            self.view.refresh()
            for chunk in _chunks(self.node.reader):
                await channel.send(encoding.dumps({"entries": chunk}))
            welcome = {"fleet": self.view.fleet, "role": claimed.role, "invite": claimed.id}
            await channel.send(encoding.dumps({"welcome": welcome}))
            self.joined += 1
            event(log, "node joined the fleet (pending approval)", peer=str(joiner),
                  fingerprint=joiner.fingerprint, sas=channel.sas, role=claimed.role,
                  invite=claimed.id)  # fmt: skip
            try:
                async with asyncio.timeout(EXCHANGE_TIMEOUT):
                    await channel.receive()
            except (TimeoutError, ChannelError):
                pass


def _chunks(reader: LogStore) -> list[list[bytes]]:
    chunks: list[list[bytes]] = [[]]
    size = 0
    for entry in reader.by_time(COLLECTION):
        if size + len(entry.raw) > CHUNK_BYTES and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(entry.raw)
        size += len(entry.raw)
    return [c for c in chunks if c]


@dataclass(frozen=True)
class Joined:
    fleet: bytes
    inviter: str
    sas: str
    role: str
    stored: int

    @property
    def fleet_text(self) -> str:
        return format_fleet_id(self.fleet)


async def join_over(channel: Channel, me: bytes, store: LogStore, fleet_file: Path) -> Joined:
    """The joining side (node key ``me``), on an open channel to the inviter:
    store the fleet document (each entry verified), check this node is a
    member, record the fleet. Raises :class:`InviteError` when the inviter
    refused the invite, another :class:`LichenError` on anything unexpected."""
    stored = 0
    async with asyncio.timeout(EXCHANGE_TIMEOUT):
        while True:
            data = await channel.receive()
            if not data:
                raise LichenError(f"{channel.peer} closed the channel before welcoming this node")
            try:
                message: Any = encoding.loads(data, "join message")
            except EncodingError as exc:
                raise LichenError(f"{channel.peer} sent a malformed join message: {exc}") from None
            if not isinstance(message, dict) or len(message) != 1:
                raise LichenError(f"{channel.peer} sent an unexpected join message")
            if "refused" in message:
                raise InviteError(f"the inviting node refused: {message['refused']}")
            if "entries" in message:
                for raw in message["entries"]:
                    if not isinstance(raw, bytes):
                        raise LichenError(f"{channel.peer} sent a join message with a bad entry")
                    stored += store.receive(raw) is InsertOutcome.STORED
                continue
            welcome = message.get("welcome")
            if not isinstance(welcome, dict) or not isinstance(welcome.get("fleet"), bytes):
                raise LichenError(f"{channel.peer} sent an unexpected join message")
            break
    fleet: bytes = welcome["fleet"]
    view = FleetView(store, fleet)
    if not view.membership.is_member(me):
        raise LichenError(
            f"{channel.peer} welcomed this node, but its fleet document does not make it "
            f"a member of {format_fleet_id(fleet)} (was it revoked before?)"
        )
    write_fleet_file(fleet_file, fleet)
    await channel.send(encoding.dumps({"stored": stored}))
    await channel.close()
    return Joined(fleet, str(channel.peer), channel.sas, str(welcome.get("role", "member")), stored)
