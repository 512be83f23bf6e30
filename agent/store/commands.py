"""What may be written through the single writer: typed commands.

A command is a small frozen value whose :meth:`~WriteCommand.apply` the
writer's thread runs inside its next group transaction (``LogStore.batch``).
It checks everything before its first write, so a command refused for bad
input — a ``ValueError`` naming it — leaves no trace but fork evidence, and
the rest of the group commits.

The store's own commands are here: every write to the log's tables that code
outside the store makes is one of them, or one of the few commands that apply
a package's rule in the same transaction as their reads, defined next to that
rule — the acknowledgement ledger's (:class:`agent.uplink.acks.RecordAcks`,
:class:`agent.uplink.acks.ForgetAcks`), the retention pass
(:class:`agent.uplink.retention.RetentionPass`) and the cloud's SQLite sink's
(:mod:`agent.cloud.sqlite_sink`). :class:`WriteCommand` names them all for
the type checker; ``LogWriter.execute(command)`` returns the command's result
type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeVar

from ..entry import Entry, verify_entry

if TYPE_CHECKING:
    from ..clock import HybridClock
    from ..identity import Identity
    from .log_store import Draft, InsertOutcome, LogStore

__all__ = [
    "Append",
    "Compact",
    "ForgetCheckpoint",
    "Insert",
    "MarkAcked",
    "Prune",
    "Receive",
    "Refuse",
    "SetCheckpoint",
    "WriteCommand",
]

T_co = TypeVar("T_co", covariant=True)


class WriteCommand(Protocol[T_co]):
    """One operation of a group transaction, run in the writer's thread."""

    def apply(self, store: LogStore) -> T_co:
        """Check, then write, with the store's ``*_now`` operations; return the result."""
        ...


@dataclass(frozen=True, slots=True)
class Append:
    """Sign ``drafts`` as the next entries of our own feed and store them (all or none).
    Their bodies are encoded before (``Draft.encoded_copy``), off the writer's thread."""

    identity: Identity
    clock: HybridClock
    drafts: Sequence[Draft]

    def apply(self, store: LogStore) -> list[Entry]:
        return store.append_now(self.identity, self.clock, self.drafts)


@dataclass(frozen=True, slots=True)
class Refuse:
    """A place-holder for an operation refused before it reached the writer (drafts
    that could not be encoded): its error comes back in its place."""

    error: ValueError

    def apply(self, store: LogStore) -> NoReturn:
        raise self.error


@dataclass(frozen=True, slots=True)
class Insert:
    """Store a foreign entry whose signature the caller has verified."""

    entry: Entry

    def apply(self, store: LogStore) -> InsertOutcome:
        return store.insert_now(self.entry)


@dataclass(frozen=True, slots=True)
class Receive:
    """Verify a foreign entry's signature (in the writer's thread: libsodium releases
    the GIL meanwhile), then store it."""

    entry: Entry

    def apply(self, store: LogStore) -> InsertOutcome:
        verify_entry(self.entry)
        return store.insert_now(self.entry)


@dataclass(frozen=True, slots=True)
class Prune:
    """Delete ``author``'s entries below ``below_seq`` (current document versions
    stay) and refuse them from then on; the result is how many went."""

    author: bytes
    below_seq: int

    def apply(self, store: LogStore) -> int:
        return store.prune_now(self.author, self.below_seq)


@dataclass(frozen=True, slots=True)
class Compact:
    """Prune ``author``'s feed below its head, read in the same transaction: the
    head and every current document version stay (the cloud's ``_acks``)."""

    author: bytes

    def apply(self, store: LogStore) -> int:
        head = store.head(self.author)
        return 0 if head is None else store.prune_now(self.author, head.seq)


@dataclass(frozen=True, slots=True)
class SetCheckpoint:
    """Everything ``peer`` offered up to its change ``change`` is stored (see
    :meth:`~agent.store.replication.Replication.set_checkpoint_now`)."""

    peer: bytes
    change: int

    def apply(self, store: LogStore) -> None:
        store.replication.set_checkpoint_now(self.peer, self.change)


@dataclass(frozen=True, slots=True)
class ForgetCheckpoint:
    """Start over with ``peer`` (None: with every peer): its next session offers
    from change 0, so what this node refused earlier (an author not yet
    approved) is offered again (see
    :meth:`~agent.store.replication.Replication.forget_checkpoint_now`)."""

    peer: bytes | None

    def apply(self, store: LogStore) -> None:
        store.replication.forget_checkpoint_now(self.peer)


@dataclass(frozen=True, slots=True)
class MarkAcked:
    """``cloud`` holds each ``(feed, seq)``'s entries ``1..seq`` (see
    :meth:`~agent.store.delivery.Delivery.record_ack_now`); per ack, whether it
    advanced what was known."""

    acks: Sequence[tuple[bytes, int]]
    cloud: bytes
    at_ms: int | None = None

    def apply(self, store: LogStore) -> list[bool]:
        record = store.delivery.record_ack_now
        return [record(feed, seq, self.cloud, self.at_ms) for feed, seq in self.acks]
