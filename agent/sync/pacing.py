"""How a sync driver speaks: its commands in order, paced by the link and by credit.

:class:`Pacing` is the output half of :class:`~agent.sync.driver.SyncDriver`:
the commands it hands out (bytes to send, reads to answer), the bound on what
may wait unsent, and the three queues that wait for room — our offer, our
wants, and the entries the peer wants from our round (read in chunks, only
when credit allows sending them, skipping what the peer may not read).

Everything a session sends is produced here, never more than ``max_unsent``
ahead of what the link has taken, so what a peer can make a node queue is
bounded whatever it sends: a peer that does not read is offered, asked and
sent nothing more, and its next round cannot begin (WANT_END waits too).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..entry import Entry
from .commands import Command, Read, ReadEntries, Send, SyncStats
from .connection import SyncConnection
from .events import Done, EntryData, Have, HaveEnd, Message, Want, WantEnd
from .plan import AccessPolicy
from .state import State

__all__ = ["MAX_UNSENT", "READ_CHUNK", "Pacing"]

READ_CHUNK = 256
"""Entries read from the log at a time when streaming (fewer when credit is short)."""

MAX_UNSENT = 256 * 1024
"""Bytes a session lets wait unsent before it stops producing more: offers,
wants, entries and credit wait until the link has taken what is queued."""


class Pacing:
    """Commands in order, and what waits for room or credit (see the module)."""

    def __init__(
        self,
        conn: SyncConnection,
        peer: bytes,
        policy: AccessPolicy,
        stats: SyncStats,
        *,
        read_chunk: int,
        max_unsent: int,
    ) -> None:
        self.conn, self.peer, self.policy, self.stats = conn, peer, policy, stats
        self.read_chunk, self.max_unsent = read_chunk, max_unsent
        self.unsent = 0
        """Bytes handed out in :class:`Send` commands and not yet reported :meth:`sent`."""
        self._commands: deque[Command] = deque()
        self._out = bytearray()  # messages not yet handed out as one Send
        self._read: Read | None = None  # the read we wait for, and what follows it
        self._then: Callable[[Any], None] = _nothing
        self._offer: deque[Have] = deque()
        self._offer_change: int | None = None  # set while an offer is being sent
        self._wants: deque[Want] = deque()
        self._want_end = False  # WANT_END is due once the wants are out
        self._to_send: deque[Want] = deque()  # what the peer wants, not yet read
        self._next_seq = 0  # within _to_send[0]
        self._buffer: deque[Entry] = deque()  # read, not yet sent
        self._rounds_done = 0  # our rounds that ended with DONE

    def next_command(self) -> Command | None:
        """The next thing to do, or ``None`` until new input arrives."""
        if not self._commands:
            self._run()
        return self._commands.popleft() if self._commands else None

    def read_done(self, result: Any) -> None:
        """The answer to the read asked for last."""
        then, self._read, self._then = self._then, None, _nothing
        then(result)

    def sent(self, nbytes: int) -> None:
        """The link took ``nbytes`` of what :class:`Send` commands carried."""
        self.unsent = max(0, self.unsent - nbytes)

    def _run(self) -> None:
        """Make progress on what arrived (the driver's part)."""
        raise NotImplementedError

    # ------------------------------------------------------------ queues

    def _queue_offer(self, haves: Sequence[Have], change: int) -> None:
        """Offer ``haves``, then HAVE_END(``change``), as room allows."""
        self._offer.extend(haves)
        self._offer_change = change
        self._pump_offer()

    def _queue_wants(self, wants: Sequence[Want]) -> None:
        """Ask for ``wants``, then WANT_END, as room allows."""
        self._wants.extend(wants)
        self._want_end = True
        self._pump_wants()

    def _stream(self, wants: Sequence[Want]) -> None:
        """The peer's WANT_END: stream what it wants from our round."""
        self._to_send = deque(wants)
        self._next_seq = wants[0].from_seq if wants else 0

    @property
    def _offering(self) -> bool:
        """An offer of ours is still being sent (HAVE_END not yet)."""
        return self._offer_change is not None

    def _pump(self) -> None:
        self._pump_offer()
        self._pump_wants()
        if self.conn.our_state is State.SENDING:
            self._pump_entries()

    def _pump_offer(self) -> None:
        while self._offer and self._room:
            self._send(self._offer.popleft())
        if self._offer_change is not None and not self._offer:
            self._send(HaveEnd(change=self._offer_change))
            self._offer_change = None

    def _pump_wants(self) -> None:
        while self._wants and self._room:
            self._send(self._wants.popleft())
        if self._want_end and not self._wants:
            self._want_end = False
            self._send(WantEnd())

    def _pump_entries(self) -> None:
        """Stream wanted entries while credit lasts; DONE when none are left."""
        conn, buffer, stats = self.conn, self._buffer, self.stats
        may_read, peer, limit = self.policy.may_read, self.peer, self.max_unsent
        while conn.our_state is State.SENDING:
            if not buffer:
                if not self._to_send:
                    self._send(Done(change=conn.offer_change or 0))
                    self._rounds_done += 1
                    return
                credit = conn.send_credit[0]
                if not credit or not self._room:
                    return  # read only what may be sent
                want = self._to_send[0]
                chunk = min(self.read_chunk, credit)
                read = ReadEntries(want.author, self._next_seq, want.to_seq, chunk)
                self._ask(read, functools.partial(self._entries_read, limit=chunk))
                return
            entry = buffer[0]
            if not may_read(peer, entry.collection):
                buffer.popleft()  # a gap the receiver sees, which the rules allow
                continue
            if self.unsent >= limit or not conn.can_send_entry(len(entry.raw)):
                return
            self._send(EntryData(entry=entry))
            stats.entries_sent += 1
            buffer.popleft()

    def _entries_read(self, entries: Sequence[Entry], limit: int) -> None:
        want = self._to_send[0]
        self._buffer.extend(entries)
        if len(entries) < limit or entries[-1].seq >= want.to_seq:
            self._to_send.popleft()
            self._next_seq = self._to_send[0].from_seq if self._to_send else 0
        else:
            self._next_seq = entries[-1].seq + 1

    # ---------------------------------------------------------- plumbing

    def _forget_read(self) -> None:
        self._read, self._then = None, _nothing

    def _asking(self) -> bool:
        """A read is asked for and not answered yet: nothing goes on until it is."""
        return self._read is not None

    @property
    def _room(self) -> bool:
        return self.unsent < self.max_unsent

    def _send(self, message: Message) -> None:
        self.conn.send(message)
        data = self.conn.data_to_send()
        self._out += data
        self.unsent += len(data)

    def _flush_out(self) -> None:
        if self._out:
            self._commands.append(Send(bytes(self._out)))
            self._out.clear()

    def _command(self, command: Command) -> None:
        self._flush_out()  # in order: what was said before comes first
        self._commands.append(command)

    def _ask(self, read: Read, then: Callable[[Any], None]) -> None:
        self._read, self._then = read, then
        self._command(read)


def _nothing(_result: Any) -> None:
    return None
