"""One sync session: the sans-IO sync protocol driven against the node's log.

:class:`SyncSession` does over SQLite what :class:`agent.sync.ReferenceSession`
does over an in-memory log (the spec is ``docs/protocol.md``, "The caller's
part"), as an asyncio shell over an open :class:`~agent.channel.Channel`:

* reads (offers, gaps, wanted entries) come from a read connection to the log,
  in bounded chunks — a session never holds a feed in memory;
* received entries are verified and stored in batches through the single
  writer (one transaction per batch) while the next ones are read and
  decoded; their credit goes back only once they are stored, so a fast peer
  can never fill our memory;
* a received entry that fails verification, a fork, an author the access
  policy refuses, or a broken protocol rule ends the session with
  :class:`~agent.errors.RemoteProtocolError` naming it (and an ERROR to the
  peer); what was stored before stays stored;
* what we send goes through a queue drained by its own task, so a session
  never stops reading while the peer is slow to read (no deadlock when both
  stream at once); what waits there is bounded by the peer's credit;
* after each completed round of the peer's, its change counter is stored as
  our checkpoint for it, so the next session asks only for what changed.

::

    session = SyncSession(channel, SessionLog(reader, writer), me, live=True)
    report = await session.run()          # until BYE, an error, or close()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator

from ..channel import Channel
from ..entry import Entry
from ..errors import ChannelError, LichenError, RemoteProtocolError
from ..identity import NodeId
from ..store.log_store import InsertOutcome
from ..sync import (
    ALLOW_ALL,
    DEFAULT_WINDOW,
    MAX_REASON,
    NEED_DATA,
    AccessPolicy,
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
    Holdings,
    Live,
    Message,
    State,
    SyncConnection,
    Want,
    WantEnd,
    plan_wants,
)
from .log_view import SessionLog
from .outbox import Outbox
from .report import SessionReport

__all__ = ["SessionLog", "SessionReport", "SyncSession"]

DEFAULT_STALL_TIMEOUT = 60.0


class SyncSession:
    """Run the sync protocol with the peer at the other end of ``channel``.

    ``live``: ask the peer for LIVE and stay until :meth:`close` (a board);
    otherwise say BYE once both logs are settled (``lichen sync``).
    ``on_stored(n)`` is called after entries were stored (the gossip pokes
    the other live sessions with it). :meth:`poke` says our log grew.
    """

    def __init__(
        self,
        channel: Channel,
        log: SessionLog,
        me: NodeId,
        *,
        role: str = "board",
        live: bool = False,
        policy: AccessPolicy = ALLOW_ALL,
        window: Credit = DEFAULT_WINDOW,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        on_stored: Callable[[int], None] | None = None,
        on_progress: Callable[[SessionReport], None] | None = None,
    ) -> None:
        self.channel, self.log, self.me = channel, log, me
        self.peer: NodeId = channel.peer
        self.role, self.live, self.policy, self.window = role, live, policy, window
        self.stall_timeout = stall_timeout
        self.on_stored, self.on_progress = on_stored, on_progress
        self.conn = SyncConnection(max_entry_size=log.max_entry_size)
        self.report = SessionReport(peer=str(self.peer))
        self._outbox = Outbox(channel.send)
        self._last_progress = time.monotonic()
        self._poked = asyncio.Event()
        self._closing: str | None = None
        self._haves: list[Have] = []
        self._from_peer = Holdings()
        self._plan: Iterator[Entry] | None = None
        self._next: Entry | None = None
        self._offered_upto = 0
        self._rounds_done = 0
        self._owe_echo = False
        self._stored_in_round = 0
        self._returned = [0, 0]
        self._ended = False
        self._storing: deque[asyncio.Task[None]] = deque()

    # ------------------------------------------------------------- control

    def poke(self) -> None:
        """New entries are in our log: offer them if the peer is live."""
        self._poked.set()

    def close(self, reason: str = "closing") -> None:
        """Say BYE (after the round in progress) and end once the peer answers."""
        self._closing = reason[:MAX_REASON]
        self._poked.set()

    @property
    def finished(self) -> bool:
        return self._ended or self.conn.closed or self.report.error is not None

    # ----------------------------------------------------------------- run

    async def run(self) -> SessionReport:
        """Run until both said BYE, the peer left, or an error; never raises for
        the peer's faults (they are in the report)."""
        sender = self._outbox.start(f"sync-send {self.peer}")
        receiver: asyncio.Task[bytes] | None = None
        try:
            since = self.log.reader.checkpoint(self.peer.key)
            change = self.log.reader.last_change()
            self._send(Hello(node=self.me.key, role=self.role, since=since, change=change))
            self._send(self.window)
            if self.live:
                self._send(Live())
            while not self.finished:
                if receiver is None:
                    receiver = asyncio.create_task(self.channel.receive())
                poked = asyncio.create_task(self._poked.wait())
                waits = {receiver, poked, sender}
                if self._storing:
                    waits.add(self._storing[0])
                done, _ = await asyncio.wait(
                    waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                poked.cancel()
                if sender in done:
                    sender.result()  # raises ChannelError if the link broke
                    break
                while self._storing and self._storing[0].done():
                    self._storing.popleft().result()  # raises for a bad entry
                if receiver in done:
                    data, receiver = receiver.result(), None
                    self._last_progress = time.monotonic()
                    await self._receive(data)
                else:
                    self._check_stall()
                self._poked.clear()
                self._advance()
        except RemoteProtocolError as exc:  # before OSError: it is a ConnectionError too
            self._end(str(exc), protocol=True)
        except (ChannelError, OSError) as exc:
            self._end(f"link failed: {exc}")
        finally:
            if receiver is not None:
                receiver.cancel()
            await asyncio.gather(*self._storing, return_exceptions=True)
            await self._outbox.finish(timeout=min(5.0, self.stall_timeout))
            await self.channel.close()
            if receiver is not None:  # it may have failed too, even after cancel(): retrieve it
                await asyncio.gather(receiver, return_exceptions=True)
            self.report.clean = self.conn.closed
            self.report.sync_bytes_sent = self.conn.bytes_sent
            self.report.sync_bytes_received = self.conn.bytes_received
            self.report.seconds = time.monotonic() - self.report.started
        return self.report

    def _check_stall(self) -> None:
        """End a session whose peer stopped reading, or went silent mid-exchange."""
        now = time.monotonic()
        unsent = now - self._outbox.last_write
        if self._outbox.pending > 0 and unsent >= self.stall_timeout:
            raise RemoteProtocolError(
                f"the peer stopped reading: {self._outbox.pending} bytes unsent for {unsent:.0f} s"
            )
        quiet = now - max(self._last_progress, self._outbox.last_write)
        if quiet < self.stall_timeout:
            return
        conn = self.conn
        waiting = conn.their_state not in (State.IDLE, State.CLOSED) or (
            conn.our_state is State.AWAIT_WANTS
        )
        if waiting or (not self.live and not self._settled()):
            raise RemoteProtocolError(f"the peer went silent for {quiet:.0f} s mid-exchange")

    def _end(self, reason: str, *, protocol: bool = False) -> None:
        if self.report.error is None:
            self.report.error = reason
            self.report.protocol_error = protocol
        if protocol and self.conn.our_state is not State.ERROR:
            with contextlib.suppress(LichenError):
                self._send(ErrorMessage(reason=reason[:MAX_REASON]))
        self._ended = True

    # ------------------------------------------------------------ receiving

    async def _receive(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        entries: list[EntryData] = []
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, EntryData):
                entries.append(event)
                continue
            if entries:
                self._storing.append(asyncio.create_task(self._store(entries)))
                entries = []
            while self._storing:  # what follows depends on every entry before it
                await self._storing.popleft()
            await self._on(event)
            if isinstance(event, ConnectionClosed):
                break
        if entries:  # stored while the next bytes are read and decoded
            self._storing.append(asyncio.create_task(self._store(entries)))

    async def _on(self, event: Event) -> None:
        if isinstance(event, Hello):
            if event.node != self.peer.key:
                raise RemoteProtocolError(
                    f"HELLO names node {NodeId(event.node)}, not the channel's peer {self.peer}"
                )
            self.report.role = event.role
            last = self.log.reader.last_change()
            self._start_round(event.since if event.since <= last else 0)
        elif isinstance(event, Have):
            self._haves.append(event)
        elif isinstance(event, HaveEnd):
            for want in plan_wants(self._haves, self.log):
                self._send(want)
                self.report.entries_wanted += want.to_seq - want.from_seq + 1
            self._haves = []
            self._send(WantEnd())
        elif isinstance(event, WantEnd):
            self._plan = self._wanted(list(self.conn.their_wants))
        elif isinstance(event, Done):
            self.report.rounds_received += 1
            peer, change = self.peer.key, event.change
            await self.log.writer.call(lambda store: store.set_checkpoint_now(peer, change))
            if self._stored_in_round:
                self._owe_echo = True
            self._stored_in_round = 0
        elif isinstance(event, ErrorMessage):
            self.report.peer_error = event.reason
            self._ended = True
        elif isinstance(event, ConnectionClosed):
            if not event.clean and self.report.error is None:
                self.report.error = "the link closed before the peer said BYE"
            self._ended = True

    async def _store(self, batch: list[EntryData]) -> None:
        entries = [message.entry for message in batch]
        for entry in entries:
            if not self.policy.may_write(entry.author, entry.collection):
                raise RemoteProtocolError(
                    f"{entry.where}: author {entry.author_id} may not write {entry.collection!r}"
                )
        results = await self.log.writer.receive_many(entries)  # verified in its thread
        stored = 0
        for entry, result in zip(entries, results, strict=True):
            self._from_peer.add(entry.author, entry.seq)
            if isinstance(result, ValueError):
                raise RemoteProtocolError(f"bad entry {entry.where}: {result}")
            if result is InsertOutcome.STORED:
                stored += 1
            elif result is InsertOutcome.DUPLICATE:
                self.report.duplicates += 1
        self.report.entries_received += len(entries)
        self.report.entries_stored += stored
        self._stored_in_round += stored
        self._returned[0] += len(batch)
        self._returned[1] += sum(message.size for message in batch)
        if stored and self.on_stored is not None:
            self.on_stored(stored)
        if self.on_progress is not None:
            self.on_progress(self.report)

    # -------------------------------------------------------------- sending

    def _send(self, message: Message) -> None:
        data = self.conn.send(message)
        self._outbox.put(data)

    def _advance(self) -> None:
        if self.finished:
            return
        if self._returned[0]:
            self._send(Credit(entries=self._returned[0], bytes=self._returned[1]))
            self._returned = [0, 0]
        if self.conn.our_state is State.SENDING:
            self._pump()
        if (
            self.conn.our_state is State.IDLE
            and self._rounds_done
            and self._closing is None
            and self.conn.their_state in (State.IDLE, State.CLOSED)  # not mid-round
            and (self._owe_echo or self.conn.peer_live)
            and (self._owe_echo or self.log.reader.last_change() > self._offered_upto)
        ):
            haves = self._offer(self._offered_upto)
            if self._owe_echo or haves:
                self._start_round(self._offered_upto, haves)
        if self.conn.our_state is State.IDLE and self._rounds_done and self._closing is not None:
            self._send(Bye(reason=self._closing))
        elif self._settled():
            self._send(Bye(reason="done"))

    def _settled(self) -> bool:
        conn = self.conn
        if conn.our_state is not State.IDLE or not self._rounds_done or self._owe_echo:
            return False
        peer_left = conn.their_state is State.CLOSED
        if self.live and not peer_left:
            return False
        return peer_left or (conn.their_state is State.IDLE and self.report.rounds_received > 0)

    def _offer(self, since: int) -> list[Have]:
        """HAVEs for what changed after our change ``since`` (everything if 0),
        minus what the peer sent us in this session (no echo)."""
        reader = self.log.reader
        spans = reader.offer_since(since) if since else reader.offer_all()
        haves = []
        for span in spans:
            for first, last in self._from_peer.feed(span.author).missing(
                span.from_seq, span.to_seq
            ):
                digest = self.log.hash_at(span.author, last)
                haves.append(
                    Have(author=span.author, from_seq=first, to_seq=last, head_hash=digest)
                )
        return haves

    def _start_round(self, since: int, haves: list[Have] | None = None) -> None:
        change = self.log.reader.last_change()
        for have in self._offer(since) if haves is None else haves:
            self._send(have)
        self._send(HaveEnd(change=change))
        self._offered_upto = change
        self._owe_echo = False
        self.report.rounds_offered += 1

    def _wanted(self, wants: list[Want]) -> Iterator[Entry]:
        for want in wants:
            yield from self.log.entries(want.author, want.from_seq, want.to_seq)

    def _pump(self) -> None:
        """Stream wanted entries while credit lasts; DONE when none are left."""
        while self.conn.our_state is State.SENDING:
            if self._next is None:
                self._next = next(self._plan, None) if self._plan is not None else None
                if self._next is None:
                    self._send(Done(change=self.conn.offer_change or 0))
                    self._rounds_done += 1
                    self._plan = None
                    return
            entry = self._next
            if not self.policy.may_read(self.peer.key, entry.collection):
                self._next = None
                continue
            if not self.conn.can_send_entry(len(entry.raw)):
                return
            self._send(EntryData(entry=entry))
            self.report.entries_sent += 1
            self._next = None
