"""The sync driver: everything a node decides in a session, without I/O.

:class:`SyncDriver` is "the caller's part" of ``docs/protocol.md`` as a sans-IO
state machine over a :class:`~agent.sync.connection.SyncConnection`. It takes
the peer's bytes and the answers to what it asked, and hands out
:mod:`commands <agent.sync.commands>`: send these bytes, store these entries,
keep this checkpoint, read this. It owns the rounds, wants, the entry stream
under credit, the credit it returns, BYE, and how much may wait unsent. Its
shells (the node's asyncio session, the in-memory reference) run them::

    driver = SyncDriver(me, peer, live=True)
    driver.start(checkpoint=checkpoints.get(peer, 0), last_change=log.last_change)
    while not driver.finished:
        while (command := driver.next_command()) is not None:
            run(command)                    # Send, Store, SaveCheckpoint, Read…
        driver.receive_data(await read_from_peer())

Whatever the peer sends, the driver never raises: a broken rule or a bad
entry ends the session with ERROR to the peer (``stats.protocol_error``).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Sequence

from ..entry import DEFAULT_MAX_ENTRY_SIZE
from ..errors import EntryError, LichenError, RemoteProtocolError
from ..identity import NodeId
from .commands import (
    FrameRefused,
    ReadHashes,
    ReadHeld,
    ReadOffer,
    SaveCheckpoint,
    Store,
    StoreResult,
    SyncStats,
)
from .connection import DEFAULT_WINDOW, NEED_DATA, SyncConnection
from .events import (
    MAX_REASON,
    Bye,
    ConnectionClosed,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    Event,
    Have,
    HaveEnd,
    Hello,
    Live,
    WantEnd,
)
from .pacing import MAX_UNSENT, READ_CHUNK, Pacing
from .plan import ALLOW_ALL, AccessPolicy, Holdings, by_priority, count_forks, fork_tips, plan_wants
from .state import State

__all__ = ["SyncDriver"]


class SyncDriver(Pacing):
    """One side of a sync session: the node's decisions, no I/O.

    ``me`` and ``peer`` are node keys (the peer's as the channel proved it).
    ``live``: ask the peer for LIVE and stay until :meth:`close`; otherwise say
    BYE once both logs are settled. ``policy`` answers who may read and write
    what (see :class:`~agent.sync.plan.AccessPolicy`). ``clouds``: the keys of
    the clouds this node knows; what it wants comes by priority
    (:func:`~agent.sync.plan.by_priority`), each feed from its oldest wanted
    seq, so a contact cut short leaves whole entries that continue the chains
    held. ``return_credit=False`` makes a receiver that never returns credit
    (tests). ``stats`` may be a subclass the shell reports (only added to).
    """

    def __init__(
        self,
        me: bytes,
        peer: bytes,
        *,
        role: str = "board",
        live: bool = False,
        policy: AccessPolicy = ALLOW_ALL,
        clouds: frozenset[bytes] = frozenset(),
        window: Credit = DEFAULT_WINDOW,
        return_credit: bool = True,
        max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE,
        read_chunk: int = READ_CHUNK,
        max_unsent: int = MAX_UNSENT,
        stats: SyncStats | None = None,
    ) -> None:
        super().__init__(
            SyncConnection(max_entry_size=max_entry_size),
            peer,
            policy,
            stats if stats is not None else SyncStats(),
            read_chunk=read_chunk,
            max_unsent=max_unsent,
        )
        self.me, self.role, self.live, self.clouds = me, role, live, clouds
        self.window, self.return_credit = window, return_credit
        self.ended: ConnectionClosed | None = None  # the end of the peer's stream, once reached
        self._failed = False
        self._closing: str | None = None
        self._dirty = False  # poked since the last look for something new to offer
        self._haves: list[Have] = []  # the peer's offer, until its HAVE_END
        self._batch: list[EntryData] = []  # entries received, not yet handed to the log
        self._storing: deque[list[EntryData]] = deque()  # handed to the log, not answered
        self._waiting: Event | None = None  # an event that must wait for the stores
        self._from_peer = Holdings()  # what the peer sent us: never offered back
        self._returned = [0, 0]  # credit to give back: entries, bytes
        self._offered_upto = 0  # the change our last offer covered
        self._stored_in_round, self._owe_echo = 0, False  # stored this round; echo owed

    # ------------------------------------------------------------ inputs

    def start(self, *, checkpoint: int, last_change: int) -> None:
        """HELLO (``since`` = our checkpoint for the peer), the initial credit, LIVE."""
        self._send(Hello(node=self.me, role=self.role, since=checkpoint, change=last_change))
        self._send(self.window)
        if self.live:
            self._send(Live())

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` when its stream ended."""
        if not self._stopped:
            self.conn.receive_data(data)

    def stored(self, results: Sequence[StoreResult]) -> None:
        """The answer to the oldest :class:`Store` in flight."""
        batch = self._storing.popleft()
        stats = self.stats
        stored = 0
        for message, result in zip(batch, results, strict=True):
            if isinstance(result, FrameRefused):
                self._fail(result.reason, protocol=True)
            elif isinstance(result, ValueError):
                reason = result.reason if isinstance(result, EntryError) else str(result)
                self._fail(f"bad entry {message.entry.where}: {reason}", protocol=True)
            elif result:
                stored += 1
            else:
                stats.duplicates += 1
            self._credit(message.size)
        stats.entries_stored += stored
        self._stored_in_round += stored

    def decode_loosely(self, loose: bool) -> None:
        """Decode ENTRY content without proving it canonical (``Store.strict``), or strictly."""
        self._flush_batch()
        self.conn.strict_entries = not loose

    def poke(self) -> None:
        """The log may have grown: offer what is new if the peer is live."""
        self._dirty = True

    def close(self, reason: str = "closing") -> None:
        """Say BYE once our round in progress is done; end when the peer answers."""
        if self._closing is None:
            self._closing = reason[:MAX_REASON]

    def fail(self, reason: str, *, protocol: bool = False) -> None:
        """End the session for a reason the shell found (the link broke);
        ``protocol``: the peer's fault (it stopped reading) — ERROR goes to it."""
        self._fail(reason, protocol=protocol)

    # ----------------------------------------------------------- outputs

    @property
    def finished(self) -> bool:
        """Both said BYE, either side gave up, or the peer's stream ended."""
        return self._stopped or self.conn.closed

    @property
    def wants_data(self) -> bool:
        """Whether to read from the peer now: not while twice :attr:`max_unsent`
        waits unsent (a peer that does not read is not read either)."""
        return not self.finished and self.unsent < 2 * self.max_unsent

    @property
    def waiting_for_peer(self) -> bool:
        """The session cannot go on until the peer says something (mid-round, or a
        one-shot sync not yet settled): its silence is a stall."""
        conn = self.conn
        mid_round = conn.their_state not in (State.IDLE, State.CLOSED)
        return mid_round or conn.our_state is State.AWAIT_WANTS or not (self.live or self.settled)

    @property
    def settled(self) -> bool:
        """Nothing more to do but BYE: our round is done, no echo round is owed, and
        the peer has left, or (for a node that is not live) finished a round and is idle."""
        conn = self.conn
        if conn.our_state is not State.IDLE or not self._rounds_done or self._owe_echo:
            return False
        if self._offering or self._asking():
            return False
        peer_left = conn.their_state is State.CLOSED
        if self.live and not peer_left:
            return False
        return peer_left or (conn.their_state is State.IDLE and self.stats.rounds_received > 0)

    @property
    def _stopped(self) -> bool:
        return self._failed or self.ended is not None or self.stats.peer_error is not None

    # --------------------------------------------------------------- loop

    def _run(self) -> None:
        try:
            while not (self._asking() or self._commands):
                events = self._take_events()
                if self._asking():
                    break
                if not self._advance() and not events:
                    break
        except RemoteProtocolError as exc:
            self._flush_batch()  # what arrived before the fault is good: store it
            self._fail(str(exc), protocol=True)
        self._flush_out()

    def _take_events(self) -> bool:
        """Handle the peer's events until more data or an answer is needed."""
        handled = False
        while not (self._asking() or self._stopped):
            event: Event
            if self._waiting is not None:
                if self._storing:
                    break
                event, self._waiting = self._waiting, None
            else:
                got = self.conn.next_event()
                if got is NEED_DATA:
                    self._flush_batch()
                    break
                event = got
                if isinstance(event, EntryData):
                    self._on_entry(event)
                    handled = True
                    continue
                self._flush_batch()
                if self._storing:  # what follows depends on every entry before it
                    self._waiting = event
                    break
            self._on(event)
            handled = True
        return handled

    def _advance(self) -> bool:
        """Send what is due; True if anything was said or asked."""
        if self.finished:
            return False
        mark = (len(self._out), len(self._commands))
        conn = self.conn
        if self.return_credit and self._returned[0] and self._room:
            entries, nbytes = self._returned
            self._returned = [0, 0]
            self._send(Credit(entries=entries, bytes=nbytes))
        self._pump()
        if not (self._asking() or self._offering) and conn.our_state is State.IDLE:
            if (
                self._rounds_done
                and self._closing is None
                and conn.their_state in (State.IDLE, State.CLOSED)  # not mid-round
                and (self._owe_echo or (conn.peer_live and self._dirty))
            ):
                self._dirty = False
                self._read_offer(self._offered_upto, first=False)
            elif self._closing is not None:
                self._send(Bye(reason=self._closing))
            elif self.settled:
                self._send(Bye(reason="done"))
        return self._asking() or mark != (len(self._out), len(self._commands))

    # ---------------------------------------------------------- reactions

    def _on(self, event: Event) -> None:
        if isinstance(event, Hello):
            if event.node != self.peer:
                raise RemoteProtocolError(
                    f"HELLO names a node other than the channel's peer: {NodeId(event.node)}, "
                    f"not {NodeId(self.peer)}"
                )
            self.stats.role = event.role
            if self.conn.our_state is State.IDLE and self._closing is None:
                self._read_offer(event.since, first=True)
        elif isinstance(event, Have):
            self._haves.append(event)
        elif isinstance(event, HaveEnd):
            haves, self._haves = self._haves, []
            ranges = tuple((h.author, h.from_seq, h.to_seq) for h in haves)
            self._ask(ReadHeld(ranges), lambda held: self._check_forks(haves, held))
        elif isinstance(event, WantEnd):
            self._stream(self.conn.their_wants)
        elif isinstance(event, Done):
            self.stats.rounds_received += 1
            self._command(SaveCheckpoint(event.change))  # after the round's stores
            if self._stored_in_round:
                self._owe_echo = True
            self._stored_in_round = 0
        elif isinstance(event, ErrorMessage):
            self.stats.peer_error = event.reason
        elif isinstance(event, Bye):
            self.stats.peer_bye = event.reason
        elif isinstance(event, ConnectionClosed):
            self.ended = event
            if not event.clean and self.stats.error is None and not self.conn.closed:
                self.stats.error = "the link closed before the peer said BYE"
        # WANT, CREDIT, LIVE: the connection keeps what matters.

    def _on_entry(self, event: EntryData) -> None:
        entry = event.entry
        self.stats.entries_received += 1
        self._from_peer.add(entry.author, entry.seq)
        if self.policy.may_write(entry.author, entry.collection, entry.seq):
            self._batch.append(event)
        else:  # a rule of ours, not the peer's fault: not stored, credit back, go on
            self.stats.entries_refused += 1
            self._credit(event.size)

    def _flush_batch(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._storing.append(batch)
            entries = tuple(message.entry for message in batch)
            self._command(Store(entries, strict=self.conn.strict_entries))

    def _credit(self, size: int) -> None:
        self._returned[0] += 1
        self._returned[1] += size

    # ------------------------------------------------------- the peer's round

    def _check_forks(self, haves: list[Have], held: list[Sequence[tuple[int, int]]]) -> None:
        """Note forks: an offered head hash that differs from the entry held there."""
        tips = fork_tips(haves, held)
        if not tips:
            self._plan(haves, held)
            return

        def compare(hashes: Sequence[bytes | None]) -> None:
            self.stats.forks_seen += count_forks(tips, hashes)
            self._plan(haves, held)

        self._ask(ReadHashes(tuple((h.author, h.to_seq) for h in tips)), compare)

    def _plan(self, haves: list[Have], held: list[Sequence[tuple[int, int]]]) -> None:
        wants = by_priority(plan_wants(haves, held), self.peer, self.clouds)
        self.stats.entries_wanted += sum(w.to_seq - w.from_seq + 1 for w in wants)
        self._queue_wants(wants)

    # ------------------------------------------------------------ our round

    def _read_offer(self, since: int, *, first: bool) -> None:
        self._ask(ReadOffer(since), lambda read: self._offer_read(since, read, first=first))

    def _offer_read(
        self, since: int, read: tuple[int, Sequence[tuple[bytes, int, int]]], *, first: bool
    ) -> None:
        change, spans = read
        if since > change:  # the peer remembers a log we no longer have: everything
            self._read_offer(0, first=first)
            return
        ranges = [
            (author, a, b)
            for author, low, high in spans
            for a, b in self._from_peer.feed(author).missing(low, high)
        ]
        if not (first or self._owe_echo or ranges):
            return  # nothing new

        def start(hashes: Sequence[bytes | None]) -> None:
            self._offered_upto = change
            self._owe_echo = False
            self.stats.rounds_offered += 1
            haves = [
                Have(author=author, from_seq=a, to_seq=b, head_hash=digest)
                for (author, a, b), digest in zip(ranges, hashes, strict=True)
            ]
            self._queue_offer(haves, change)

        if ranges:
            self._ask(ReadHashes(tuple((author, b) for author, _, b in ranges)), start)
        else:
            start([])

    # ---------------------------------------------------------- plumbing

    def _fail(self, reason: str, *, protocol: bool) -> None:
        stats = self.stats
        if not self._stopped:
            stats.error = reason
            stats.protocol_error = protocol
            if protocol and self.conn.our_state is not State.ERROR:
                with contextlib.suppress(LichenError):  # allowed in every state but ERROR
                    self._send(ErrorMessage(reason=reason[:MAX_REASON]))
        self._failed = True
        self._forget_read()  # an answer still to come is not waited for
        self._flush_out()
