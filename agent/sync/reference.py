"""The reference caller: how a node drives a :class:`SyncConnection`.

:class:`ReferenceSession` is the behaviour docs/protocol.md specifies, over a
:class:`~agent.sync.memlog.MemoryLog` instead of SQLite, synchronously: feed
it the peer's bytes, write back what it returns. The asyncio shell does the
same steps against the store (see "The caller's part" in the spec):

* on the peer's HELLO: offer what changed since its ``since`` (everything if
  ``since`` is 0 or above our counter), then HAVE_END;
* on HAVE … HAVE_END: WANT what we lack (:func:`~agent.sync.plan.plan_wants`);
* on WANT_END and on CREDIT: stream wanted entries while credit lasts,
  fetching each only when it can be sent, then DONE;
* on ENTRY: check write access, verify and store; return the credit;
* on DONE: keep its change as the checkpoint for this peer; if anything was
  stored, owe the peer a round (the *echo round*, see below);
* live: new rounds for new entries while the peer asked for LIVE; otherwise
  BYE once settled.

>>> a, b = ReferenceNode(bytes([1]) * 32), ReferenceNode(bytes([2]) * 32)
>>> run_pair(a.session(b.key), b.session(a.key))  # HELLO, HAVE_END, WANT_END, DONE, BYE
5
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..errors import EntryError, RemoteProtocolError
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
    Message,
    WantEnd,
)
from .memlog import MemoryLog
from .plan import ALLOW_ALL, AccessPolicy, Holdings, offer_from_changes, plan_wants, wanted_entries
from .state import State

__all__ = ["ReferenceNode", "ReferenceSession", "SessionStats", "deliver", "run_pair"]


@dataclass
class SessionStats:
    """What one session did, counted by its own side."""

    entries_received: int = 0  # ENTRY events
    entries_stored: int = 0
    entries_refused: int = 0  # refused by the policy or the log (bad signature, fork …)
    entries_sent: int = 0
    rounds_offered: int = 0
    rounds_received: int = 0  # DONE events: peer rounds completed
    forks_seen: int = 0  # HAVE head hashes that differ from the entry held there


class ReferenceNode:
    """A node for tests and as a model: its log, key, role, checkpoints and habits.

    ``live``: ask peers for LIVE and stay until they say BYE (a board); a node
    that is not live says BYE once settled (``lichen sync`` from a mule).
    ``grant_credit=False`` makes a receiver that never returns credit.

        node = ReferenceNode(key, MemoryLog(entries), live=True)
        session = node.session(peer_key)
    """

    def __init__(
        self,
        key: bytes,
        log: MemoryLog | None = None,
        *,
        role: str = "board",
        live: bool = False,
        policy: AccessPolicy = ALLOW_ALL,
        window: Credit = DEFAULT_WINDOW,
        grant_credit: bool = True,
    ) -> None:
        self.key = key
        self.log = log if log is not None else MemoryLog()
        self.role = role
        self.live = live
        self.policy = policy
        self.window = window
        self.grant_credit = grant_credit
        self.checkpoints: dict[bytes, int] = {}
        """Per peer key: the peer's change counter up to which we hold its offers."""

    def session(self, peer: bytes) -> ReferenceSession:
        """A new session with ``peer`` (the key the channel authenticated)."""
        return ReferenceSession(self, peer)


class ReferenceSession:
    """One session of a :class:`ReferenceNode` with one peer.

    Call :meth:`start` once, then :meth:`receive` with each chunk of the
    peer's bytes (``b""`` when its stream ends), :meth:`poke` after new
    entries were added to the log, :meth:`close` to leave. Each returns the
    bytes to send. After a protocol error, ``error`` holds it (and the ERROR
    message was the last thing returned).
    """

    def __init__(self, node: ReferenceNode, peer: bytes) -> None:
        self.node, self.peer, self.log = node, peer, node.log
        self.conn = SyncConnection(max_entry_size=node.log.max_entry_size)
        self.stats = SessionStats()
        self.received: Counter[tuple[bytes, int]] = Counter()
        self.error: RemoteProtocolError | None = None
        self.peer_error: str | None = None
        self.ended: ConnectionClosed | None = None
        self._out: list[bytes] = []
        self._haves: list[Have] = []
        self._from_peer = Holdings()  # what the peer sent us: never offered back
        self._plan: Iterator[tuple[bytes, int]] | None = None
        self._next: tuple[bytes, int] | None = None
        self._offered_upto = 0
        self._rounds_done = 0
        self._owe_echo = False
        self._stored_in_round = 0
        self._returned = [0, 0]

    @property
    def finished(self) -> bool:
        """Both said BYE, or the session failed (an ERROR either way) or its stream ended."""
        return (
            self.conn.closed
            or self.error is not None
            or self.peer_error is not None
            or self.ended is not None
        )

    def start(self) -> bytes:
        since = self.node.checkpoints.get(self.peer, 0)
        self._send(
            Hello(node=self.node.key, role=self.node.role, since=since, change=self.log.last_change)
        )
        self._send(self.node.window)
        if self.node.live:
            self._send(Live())
        return self._flush()

    def receive(self, data: bytes) -> bytes:
        if self.error is not None or self.ended is not None:
            return b""
        self.conn.receive_data(data)
        try:
            while (event := self.conn.next_event()) is not NEED_DATA:
                self._on(event)
                if isinstance(event, ConnectionClosed):
                    return self._flush()
        except RemoteProtocolError as exc:
            self.error = exc
            self._send(ErrorMessage(reason=str(exc)[:MAX_REASON]))
            return self._flush()
        self._advance()
        return self._flush()

    def poke(self) -> bytes:
        """New entries are in the log: offer them if the peer is live."""
        if not self.finished:
            self._advance()
        return self._flush()

    def close(self, reason: str = "closing") -> bytes:
        if not self.finished and self.conn.our_state not in (State.CLOSED, State.ERROR):
            self._send(Bye(reason=reason))
        return self._flush()

    # ------------------------------------------------------------- reactions

    def _on(self, event: Event) -> None:
        if isinstance(event, Hello):
            if event.node != self.peer:
                raise RemoteProtocolError("HELLO names a node other than the channel's peer")
            since = event.since if event.since <= self.log.last_change else 0
            self._start_round(since)
        elif isinstance(event, Have):
            self._haves.append(event)
            held = self.log.get(event.author, event.to_seq)
            if event.head_hash is not None and held is not None and held.hash != event.head_hash:
                self.stats.forks_seen += 1
        elif isinstance(event, HaveEnd):
            wants = plan_wants(self._haves, self.log.holdings)
            self._haves = []
            for want in wants:
                self._send(want)
            self._send(WantEnd())
        elif isinstance(event, WantEnd):
            self._plan = wanted_entries(self.conn.their_wants, self.log.holdings)
        elif isinstance(event, EntryData):
            self._on_entry(event)
        elif isinstance(event, Done):
            self.node.checkpoints[self.peer] = event.change
            self.stats.rounds_received += 1
            if self._stored_in_round:
                self._owe_echo = True
            self._stored_in_round = 0
        elif isinstance(event, ErrorMessage):
            self.peer_error = event.reason
        elif isinstance(event, ConnectionClosed):
            self.ended = event
        # WANT, CREDIT, LIVE, BYE: the connection keeps what matters.

    def _on_entry(self, event: EntryData) -> None:
        entry = event.entry
        key = (entry.author, entry.seq)
        self.stats.entries_received += 1
        self.received[key] += 1
        self._from_peer.add(entry.author, entry.seq)
        if not self.node.policy.may_write(entry.author, entry.collection):
            self.stats.entries_refused += 1
        else:
            try:
                stored = self.log.add(entry)
            except EntryError:
                self.stats.entries_refused += 1
            else:
                self.stats.entries_stored += stored
                self._stored_in_round += stored
        if self.node.grant_credit:
            self._returned[0] += 1
            self._returned[1] += event.size

    def _advance(self) -> None:
        if self.finished:
            return
        if self._returned[0]:
            self._send(Credit(entries=self._returned[0], bytes=self._returned[1]))
            self._returned = [0, 0]
        if self.conn.our_state is State.SENDING:
            self._pump()
        if self.conn.our_state is State.IDLE and self._rounds_done:
            haves = self._offer(self._offered_upto)
            if self._owe_echo or (self.conn.peer_live and haves):
                self._start_round(self._offered_upto, haves)
        if self._settled():
            self._send(Bye(reason="done"))

    def _settled(self) -> bool:
        conn = self.conn
        if conn.our_state is not State.IDLE or not self._rounds_done or self._owe_echo:
            return False
        peer_left = conn.their_state is State.CLOSED
        if self.node.live and not peer_left:
            return False
        return peer_left or (conn.their_state is State.IDLE and self.stats.rounds_received > 0)

    def _offer(self, since: int) -> list[Have]:
        changes = self.log.changes_since(since)
        return offer_from_changes(changes, exclude=self._from_peer, head_hash=self._hash_at)

    def _hash_at(self, author: bytes, seq: int) -> bytes | None:
        entry = self.log.get(author, seq)
        return None if entry is None else entry.hash

    def _start_round(self, since: int, haves: list[Have] | None = None) -> None:
        change = self.log.last_change
        if haves is None:
            haves = self._offer(since)
        for have in haves:
            self._send(have)
        self._send(HaveEnd(change=change))
        self._offered_upto = change
        self._owe_echo = False
        self.stats.rounds_offered += 1

    def _pump(self) -> None:
        """Stream wanted entries while credit lasts; DONE when none are left."""
        policy, log = self.node.policy, self.log
        while self.conn.our_state is State.SENDING:
            if self._next is None:
                self._next = next(self._plan, None) if self._plan is not None else None
                if self._next is None:
                    self._send(Done(change=self.conn.offer_change or 0))
                    self._rounds_done += 1
                    self._plan = None
                    return
            entry = log.get(*self._next)
            if entry is None or not policy.may_read(self.peer, entry.collection):
                self._next = None
                continue
            if not self.conn.can_send_entry(len(entry.raw)):
                return
            self._send(EntryData(entry=entry))
            self.stats.entries_sent += 1
            self._next = None

    def _send(self, message: Message) -> None:
        self._out.append(self.conn.send(message))

    def _flush(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data


def deliver(
    session: ReferenceSession, data: bytes, split: Callable[[bytes], Iterable[bytes]] | None = None
) -> bytes:
    """Hand ``data`` to ``session`` (in the chunks ``split`` cuts); its replies."""
    if not data:
        return b""
    chunks = split(data) if split is not None else (data,)
    return b"".join(session.receive(chunk) for chunk in chunks if chunk)


def run_pair(
    a: ReferenceSession,
    b: ReferenceSession,
    *,
    split: Callable[[bytes], Iterable[bytes]] | None = None,
    max_flights: int = 10_000,
) -> int:
    """Run two sessions in lockstep until neither has anything to send; then, if
    both said BYE, end both streams. Returns the number of flights: each
    flight carries what each side said since the last, to the other side at
    once — two flights are one round trip."""
    to_b, to_a = a.start(), b.start()
    flights = 0
    while to_a or to_b:
        flights += 1
        if flights > max_flights:
            raise RuntimeError(f"the sessions are still talking after {max_flights} flights")
        to_a, to_b = deliver(b, to_b, split), deliver(a, to_a, split)
    if a.conn.closed and b.conn.closed:
        a.receive(b"")
        b.receive(b"")
    return flights
