"""The reference session: the sync driver over an in-memory log, synchronously.

:class:`ReferenceSession` runs the same :class:`~agent.sync.driver.SyncDriver`
as the node's asyncio session, over a :class:`~agent.sync.memlog.MemoryLog`
instead of SQLite: feed it the peer's bytes, write back what it returns.
Every command runs at once — stores and reads are synchronous — so two
sessions can be run in lockstep, cut and reordered at will (the property and
fuzz tests do).

>>> a, b = ReferenceNode(bytes([1]) * 32), ReferenceNode(bytes([2]) * 32)
>>> run_pair(a.session(b.key), b.session(a.key))  # HELLO, HAVE_END, WANT_END, DONE, BYE
5
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field

from ..entry import Entry
from ..errors import EntryError
from .commands import SaveCheckpoint, Send, Store, StoreResult, SyncStats, perform_read
from .connection import DEFAULT_WINDOW
from .driver import SyncDriver
from .events import ConnectionClosed, Credit
from .memlog import MemoryLog
from .plan import ALLOW_ALL, AccessPolicy

__all__ = ["ReferenceNode", "ReferenceSession", "deliver", "run_pair"]


@dataclass(eq=False)
class ReferenceNode:
    """A node for tests and as a model: its log, key, role, checkpoints and habits.

    ``live``: ask peers for LIVE and stay until they say BYE (a board); a node
    that is not live says BYE once settled (``lichen sync`` from a mule).
    ``grant_credit=False`` makes a receiver that never returns credit.

        node = ReferenceNode(key, MemoryLog(entries), live=True)
        session = node.session(peer_key)
    """

    key: bytes
    log: MemoryLog = field(default_factory=MemoryLog)
    _: KW_ONLY
    role: str = "board"
    live: bool = False
    policy: AccessPolicy = ALLOW_ALL
    window: Credit = DEFAULT_WINDOW
    grant_credit: bool = True
    clouds: frozenset[bytes] = frozenset()
    checkpoints: dict[bytes, int] = field(default_factory=dict, init=False)
    """Per peer key: the peer's change counter up to which we hold its offers."""

    def session(self, peer: bytes) -> ReferenceSession:
        """A new session with ``peer`` (the key the channel authenticated)."""
        return ReferenceSession(self, peer)


class ReferenceSession:
    """One session of a :class:`ReferenceNode` with one peer.

    Call :meth:`start` once, then :meth:`receive` with each chunk of the
    peer's bytes (``b""`` when its stream ends), :meth:`poke` after new
    entries were added to the log, :meth:`close` to leave. Each returns the
    bytes to send. ``stats`` says what happened and how it ended;
    ``received`` counts every entry handed to the log, by ``(author, seq)``.
    """

    def __init__(self, node: ReferenceNode, peer: bytes) -> None:
        self.node, self.peer, self.log = node, peer, node.log
        self.driver = SyncDriver(
            node.key,
            peer,
            role=node.role,
            live=node.live,
            policy=node.policy,
            clouds=node.clouds,
            window=node.window,
            return_credit=node.grant_credit,
            max_entry_size=node.log.max_entry_size,
        )
        self.conn = self.driver.conn
        self.stats: SyncStats = self.driver.stats
        self.received: Counter[tuple[bytes, int]] = Counter()

    @property
    def error(self) -> str | None:
        """Why this side ended the session (a protocol error: ``stats.protocol_error``)."""
        return self.stats.error

    @property
    def peer_error(self) -> str | None:
        return self.stats.peer_error

    @property
    def ended(self) -> ConnectionClosed | None:
        return self.driver.ended

    @property
    def finished(self) -> bool:
        """Both said BYE, the session failed (an ERROR either way) or its stream ended."""
        return self.driver.finished

    def start(self) -> bytes:
        since = self.node.checkpoints.get(self.peer, 0)
        self.driver.start(checkpoint=since, last_change=self.log.last_change)
        return self._run()

    def receive(self, data: bytes) -> bytes:
        self.driver.receive_data(data)
        return self._run()

    def poke(self) -> bytes:
        """New entries are in the log: offer them if the peer is live."""
        self.driver.poke()
        return self._run()

    def close(self, reason: str = "closing") -> bytes:
        self.driver.close(reason)
        return self._run()

    def _run(self) -> bytes:
        """Run every command the driver has, at once; the bytes to send."""
        driver, out = self.driver, []
        while (command := driver.next_command()) is not None:
            if isinstance(command, Send):
                out.append(command.data)
                driver.sent(len(command.data))
            elif isinstance(command, Store):
                driver.stored([self._store(entry) for entry in command.entries])
            elif isinstance(command, SaveCheckpoint):
                self.node.checkpoints[self.peer] = command.change
            else:
                driver.read_done(perform_read(self.log, command))
        return b"".join(out)

    def _store(self, entry: Entry) -> StoreResult:
        self.received[(entry.author, entry.seq)] += 1
        try:
            return self.log.add(entry)
        except EntryError as exc:
            return exc


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
