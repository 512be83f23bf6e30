"""The sync protocol's messages, as events: one frozen, slotted dataclass each.

:class:`~agent.sync.connection.SyncConnection` turns received bytes into these
events and events into bytes (h11-style). Constructors are keyword-only and
check every field, so an event that exists is well-formed; a bad field raises
:class:`~agent.errors.LocalProtocolError` (when the bytes came from the peer,
the connection re-raises it as :class:`~agent.errors.RemoteProtocolError`)::

    >>> Want(author=bytes(32), from_seq=3, to_seq=9)
    Want(author=0000000000…, from_seq=3, to_seq=9)
    >>> Want(author=bytes(32), from_seq=9, to_seq=3)
    Traceback (most recent call last):
    ...
    agent.errors.LocalProtocolError: WANT from_seq 9 is above to_seq 3

``NAME`` is the message's name in ``docs/protocol.md``; ``TYPE`` its number
on the wire. :class:`ConnectionClosed` is not a message: it reports the end
of the byte stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..entry import Entry
from ..errors import LocalProtocolError

__all__ = [
    "MAX_CHANGE",
    "MAX_CREDIT",
    "MAX_REASON",
    "MAX_SEQ",
    "PROTOCOL_VERSION",
    "ROLES",
    "AnyMessage",
    "Bye",
    "ConnectionClosed",
    "Credit",
    "Done",
    "EntryData",
    "ErrorMessage",
    "Event",
    "Have",
    "HaveEnd",
    "Hello",
    "Live",
    "Message",
    "Want",
    "WantEnd",
]

PROTOCOL_VERSION = 1
MAX_SEQ = 2**63 - 1  # as in the entry format
MAX_CHANGE = 2**63 - 1  # SQLite's largest rowid
MAX_CREDIT = 2**32 - 1  # one CREDIT field, and the credit outstanding at any time
MAX_REASON = 400  # characters of a BYE / ERROR reason
ROLES = ("board", "mule", "cloud")


def _uint(message: str, name: str, value: object, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise LocalProtocolError(
            f"{message} {name} must be an integer from 0 to {maximum}, not {value!r}"
        )
    return value


def _key(message: str, name: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        raise LocalProtocolError(f"{message} {name} must be 32 bytes, not {_show(value)}")
    return value


def _seq_range(message: str, from_seq: object, to_seq: object) -> None:
    _uint(message, "from_seq", from_seq, MAX_SEQ)
    _uint(message, "to_seq", to_seq, MAX_SEQ)
    if from_seq == 0:
        raise LocalProtocolError(f"{message} from_seq must be at least 1 (seqs start at 1)")
    if from_seq > to_seq:  # type: ignore[operator]  # both checked ints above
        raise LocalProtocolError(f"{message} from_seq {from_seq} is above to_seq {to_seq}")


def _reason(message: str, value: object) -> None:
    if type(value) is not str or len(value) > MAX_REASON:
        raise LocalProtocolError(
            f"{message} reason must be text of at most {MAX_REASON} characters, not {_show(value)}"
        )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _hex(key: bytes) -> str:
    return key[:5].hex() + "…"


class Message:
    """Base of every message event. ``NAME`` and ``TYPE`` identify it on the wire."""

    __slots__ = ()
    NAME: ClassVar[str]
    TYPE: ClassVar[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """The first message each way: who I am, and where your offer to me starts.

    ``since`` is my checkpoint for you (your change counter up to which I hold
    everything you offered me; 0 = none); ``change`` is my own change counter::

        Hello(node=my_key, role="board", since=checkpoints.get(peer, 0), change=store.last_change())
    """

    NAME: ClassVar[str] = "HELLO"
    TYPE: ClassVar[int] = 0
    node: bytes
    role: str
    since: int = 0
    change: int = 0
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _uint("HELLO", "version", self.version, MAX_CHANGE)
        _key("HELLO", "node", self.node)
        if self.role not in ROLES:
            raise LocalProtocolError(f"HELLO role must be one of {ROLES}, not {_show(self.role)}")
        _uint("HELLO", "since", self.since, MAX_CHANGE)
        _uint("HELLO", "change", self.change, MAX_CHANGE)

    def __repr__(self) -> str:
        return (
            f"Hello(node={_hex(self.node)}, role={self.role!r}, since={self.since}, "
            f"change={self.change}, version={self.version})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Have(Message):
    """An offer: I can give you entries of feed ``author`` with seqs in ``from_seq..to_seq``.

    A summary, not a promise for every seq (a provider may lack some, and skips
    them). ``head_hash``, when present, is the hash of entry ``to_seq``: a
    receiver holding a different entry there has found a fork::

        Have(author=feed, from_seq=1, to_seq=42, head_hash=head.hash)
    """

    NAME: ClassVar[str] = "HAVE"
    TYPE: ClassVar[int] = 1
    author: bytes
    from_seq: int
    to_seq: int
    head_hash: bytes | None = None

    def __post_init__(self) -> None:
        _key("HAVE", "author", self.author)
        _seq_range("HAVE", self.from_seq, self.to_seq)
        if self.head_hash is not None:
            _key("HAVE", "head_hash", self.head_hash)

    def __repr__(self) -> str:
        head = "" if self.head_hash is None else f", head_hash={_hex(self.head_hash)}"
        return (
            f"Have(author={_hex(self.author)}, from_seq={self.from_seq}, "
            f"to_seq={self.to_seq}{head})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HaveEnd(Message):
    """The offer round is complete; it covers my changes up to ``change``::

    HaveEnd(change=store.last_change())
    """

    NAME: ClassVar[str] = "HAVE_END"
    TYPE: ClassVar[int] = 2
    change: int

    def __post_init__(self) -> None:
        _uint("HAVE_END", "change", self.change, MAX_CHANGE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Want(Message):
    """A request for the offered entries of ``author`` with seqs ``from_seq..to_seq``
    that I lack (see :func:`~agent.sync.plan.plan_wants`)::

        Want(author=feed, from_seq=8, to_seq=42)
    """

    NAME: ClassVar[str] = "WANT"
    TYPE: ClassVar[int] = 3
    author: bytes
    from_seq: int
    to_seq: int

    def __post_init__(self) -> None:
        _key("WANT", "author", self.author)
        _seq_range("WANT", self.from_seq, self.to_seq)

    def __repr__(self) -> str:
        return f"Want(author={_hex(self.author)}, from_seq={self.from_seq}, to_seq={self.to_seq})"


@dataclass(frozen=True, slots=True, kw_only=True)
class WantEnd(Message):
    """I have asked for everything I want from this round: start streaming. ``WantEnd()``"""

    NAME: ClassVar[str] = "WANT_END"
    TYPE: ClassVar[int] = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryData(Message):
    """One wanted entry, exactly as signed (``entry.raw`` travels; the receiving
    connection decodes it strictly, the caller verifies and stores it)::

        EntryData(entry=store.get(author, seq))
    """

    NAME: ClassVar[str] = "ENTRY"
    TYPE: ClassVar[int] = 5
    entry: Entry

    def __post_init__(self) -> None:
        if not isinstance(self.entry, Entry):
            raise LocalProtocolError(
                f"ENTRY entry must be an agent.entry.Entry, not {_show(self.entry)}"
            )

    @property
    def size(self) -> int:
        """What the entry costs in byte credit: the length of its encoding."""
        return len(self.entry.raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credit(Message):
    """Flow control: you may send me ``entries`` more ENTRY messages holding up to
    ``bytes`` more entry bytes (added to what is left of earlier grants)::

        Credit(entries=1024, bytes=256 * 1024)
    """

    NAME: ClassVar[str] = "CREDIT"
    TYPE: ClassVar[int] = 6
    entries: int
    bytes: int

    def __post_init__(self) -> None:
        _uint("CREDIT", "entries", self.entries, MAX_CREDIT)
        _uint("CREDIT", "bytes", self.bytes, MAX_CREDIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Done(Message):
    """Everything wanted in the round that ended with ``HaveEnd(change=change)``
    has been sent; once stored, the receiver may keep ``change`` as its checkpoint::

        Done(change=round_change)
    """

    NAME: ClassVar[str] = "DONE"
    TYPE: ClassVar[int] = 7
    change: int

    def __post_init__(self) -> None:
        _uint("DONE", "change", self.change, MAX_CHANGE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Live(Message):
    """Keep offering me what you store, in new rounds, until one of us says BYE. ``Live()``"""

    NAME: ClassVar[str] = "LIVE"
    TYPE: ClassVar[int] = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(Message):
    """I start no more rounds (a round of mine in progress is abandoned) and want
    no more live offers; I still answer your rounds. Both BYEs end the session::

        Bye(reason="done")
    """

    NAME: ClassVar[str] = "BYE"
    TYPE: ClassVar[int] = 9
    reason: str = ""

    def __post_init__(self) -> None:
        _reason("BYE", self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage(Message):
    """The ERROR message: the sender found a protocol error and closes (best effort)::

    ErrorMessage(reason="ENTRY beyond credit")
    """

    NAME: ClassVar[str] = "ERROR"
    TYPE: ClassVar[int] = 10
    reason: str = ""

    def __post_init__(self) -> None:
        _reason("ERROR", self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer's byte stream ended. ``clean`` when it had said BYE first::

    ConnectionClosed(clean=True)
    """

    clean: bool

    def __post_init__(self) -> None:
        if type(self.clean) is not bool:
            raise LocalProtocolError(
                f"ConnectionClosed clean must be a bool, not {_show(self.clean)}"
            )


AnyMessage = (
    Hello | Have | HaveEnd | Want | WantEnd | EntryData | Credit | Done | Live | Bye | ErrorMessage
)
"""Any one message (what :func:`~agent.sync.wire.decode_message` returns)."""

Event = (
    Hello
    | Have
    | HaveEnd
    | Want
    | WantEnd
    | EntryData
    | Credit
    | Done
    | Live
    | Bye
    | ErrorMessage
    | ConnectionClosed
)
"""Everything :meth:`~agent.sync.connection.SyncConnection.next_event` hands out
(besides ``NEED_DATA``)."""
