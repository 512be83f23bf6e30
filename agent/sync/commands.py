"""What the sync driver asks of its shell, what the shell answers, and what it counts.

The driver (:class:`~agent.sync.driver.SyncDriver`) does no I/O. It hands its
shell *commands* and waits for the answers it needs:

* :class:`Send` — write the bytes to the peer, in order; tell ``driver.sent(n)``
  as the link takes them (the driver bounds what waits unsent);
* :class:`Store` — verify and store the entries, each on its own; answer
  ``driver.stored(results)``;
* :class:`SaveCheckpoint` — keep the change as the checkpoint for the peer,
  after every :class:`Store` asked before it (nothing to answer);
* :class:`ReadOffer`, :class:`ReadHeld`, :class:`ReadHashes`,
  :class:`ReadEntries` — read the log (:class:`SyncLog`); answer
  ``driver.read_done(result)``.

A read may be answered at once or later; the driver waits for it before it
goes on. Stores may be in flight several at a time; their answers come back
in the order they were asked. A shell that reads synchronously answers every
read with :func:`perform_read` over its :class:`SyncLog`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..entry import Entry
from ..errors import EntryError

__all__ = [
    "Command",
    "FrameRefused",
    "Read",
    "ReadEntries",
    "ReadHashes",
    "ReadHeld",
    "ReadOffer",
    "SaveCheckpoint",
    "Send",
    "Store",
    "StoreResult",
    "SyncLog",
    "SyncStats",
    "perform_read",
]

StoreResult = bool | ValueError
"""Per entry of a :class:`Store`: ``True`` stored, ``False`` not stored because it
was held already (the same bytes, or below the feed's prune watermark), or the
:class:`~agent.errors.EntryError` (a ``ValueError``) that refused it."""


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to the peer, after everything sent before."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Store:
    """Verify (signature, chain, forks) and store ``entries``, each on its own;
    answer ``driver.stored`` with one :data:`StoreResult` per entry.

    ``strict=False``: the entries were decoded without proving their canonical
    form (:meth:`SyncDriver.decode_loosely`); the shell proves it first, and
    answers :class:`FrameRefused` from the first entry that fails on."""

    entries: tuple[Entry, ...]
    strict: bool = True


class FrameRefused(EntryError):
    """The answer for an entry of a loosely decoded :class:`Store` that is not
    canonical, and for every entry after it: the session ends with ``reason``,
    the protocol error the connection raises for that frame when it decodes
    strictly (:func:`~agent.sync.wire.check_entry`)."""


@dataclass(frozen=True, slots=True)
class SaveCheckpoint:
    """Keep ``change`` as the checkpoint for the peer — written after the
    :class:`Store` commands before it, never ahead of them."""

    change: int


@dataclass(frozen=True, slots=True)
class ReadOffer:
    """What to offer: :meth:`SyncLog.offer` of ``since``."""

    since: int


@dataclass(frozen=True, slots=True)
class ReadHeld:
    """For each ``(author, first, last)``: :meth:`SyncLog.held`."""

    ranges: tuple[tuple[bytes, int, int], ...]


@dataclass(frozen=True, slots=True)
class ReadHashes:
    """For each ``(author, seq)``: the hash of the entry held there, or ``None``."""

    keys: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True, slots=True)
class ReadEntries:
    """:meth:`SyncLog.entries` of ``author``'s ``first..last``, at most ``limit``."""

    author: bytes
    first: int
    last: int
    limit: int


Read = ReadOffer | ReadHeld | ReadHashes | ReadEntries
Command = Send | Store | SaveCheckpoint | Read


class SyncLog(Protocol):
    """The reads a log answers for a session (``MemoryLog`` and the SQLite
    session log implement it)."""

    def offer(self, since: int) -> tuple[int, Sequence[tuple[bytes, int, int]]]:
        """The change counter, read first, and ``(author, first, last)`` ranges that
        cover every entry stored after local change ``since`` — every held entry
        when ``since`` is 0 — feeds in byte order, ranges ascending. Gaps inside a
        range are allowed (the provider skips what it lacks)."""
        ...

    def held(self, author: bytes, first: int, last: int) -> Sequence[tuple[int, int]]:
        """The parts of ``first..last`` not to ask for — held, or below the feed's
        prune watermark — as sorted, disjoint ranges."""
        ...

    def hashes(self, keys: Sequence[tuple[bytes, int]]) -> Sequence[bytes | None]:
        """The hash of the entry held at each ``(author, seq)``, or ``None``."""
        ...

    def entries(self, author: bytes, first: int, last: int, limit: int) -> Sequence[Entry]:
        """Up to ``limit`` held entries of ``author`` within ``first..last``, seqs ascending."""
        ...


def perform_read(log: SyncLog, command: Read) -> object:
    """The answer to ``command`` from ``log``, for ``driver.read_done``."""
    if isinstance(command, ReadOffer):
        return log.offer(command.since)
    if isinstance(command, ReadHeld):
        return [log.held(author, first, last) for author, first, last in command.ranges]
    if isinstance(command, ReadHashes):
        return log.hashes(command.keys)
    return log.entries(command.author, command.first, command.last, command.limit)


@dataclass(kw_only=True)
class SyncStats:
    """What one session did, counted by its own side, and how it ended."""

    role: str | None = None  # the peer's, from its HELLO
    entries_sent: int = 0
    entries_wanted: int = 0  # asked of the peer (an upper bound: it may lack some)
    entries_received: int = 0  # ENTRY messages
    entries_stored: int = 0
    entries_refused: int = 0  # the access policy refused them (not stored)
    duplicates: int = 0  # held already (or below a prune watermark)
    rounds_offered: int = 0
    rounds_received: int = 0  # DONE messages: the peer's rounds completed
    forks_seen: int = 0  # offered head hashes that differ from the entry held there
    error: str | None = None  # ours: why we ended it
    peer_error: str | None = None  # theirs: the ERROR they sent
    peer_bye: str | None = None  # the reason in their BYE (e.g. "done")
    protocol_error: bool = False  # the peer broke the protocol or sent bad entries
    clean: bool = False  # both said BYE

    @property
    def ok(self) -> bool:
        return self.error is None and self.peer_error is None
