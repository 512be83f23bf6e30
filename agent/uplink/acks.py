"""Which acknowledgements count, and taking them into the delivery state.

A cloud acknowledges by signing ``_acks`` entries (see :mod:`agent.uplink.wire`).
Anyone who can reach the broker can publish on a board's ``ack`` topic, so a
board believes only the clouds it was given:

* ``[retention] ack_from = ["lc1…", …]``: exactly these clouds (the ids
  ``lichen cloud`` prints);
* ``ack_from = "first-seen"``: trust on first use, asked for by name — the
  first cloud whose acknowledgement arrives over this node's own uplink is
  remembered in ``HOME/state/clouds``, and no other after it;
* ``ack_from = []`` (the default): no cloud. Nothing this node uploads is ever
  taken as received; it says so at start.

:meth:`AckLedger.screen` decides what an uplink may store from the ack topic
(only entries of accepted clouds in the collections a cloud sends boards:
``_acks``, ``_time`` beacons and ``_commands``, :data:`agent.cloud_feed.FROM_CLOUD`);
:meth:`AckLedger.new_acks` reads every newly stored ``_acks`` entry (by local
change counter, so each is looked at once — gossip brings them too);
:class:`RecordAcks`, run by the writer, records them in ``uplink_acks``, never
past what this node holds: an acknowledgement of this node's own feed above its
head is refused (no cloud can hold entries this node never wrote), one of
another feed is taken only up to the head held here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cloud_feed import FROM_CLOUD
from ..entry import Entry, decode_entry, verify_entry
from ..errors import LichenError
from ..fsutil import atomic_write
from ..identity import NodeId
from ..store.log_store import LogStore
from .config import FIRST_SEEN
from .wire import ACKS_COLLECTION, parse_ack_body

__all__ = [
    "REFUSALS",
    "Ack",
    "AckLedger",
    "AcksRecorded",
    "ForgetAcks",
    "RecordAcks",
    "Screened",
    "ack_of",
]

log = logging.getLogger("lichen.uplink")

#: why an entry on the ack topic, or an acknowledgement, was refused (status keys)
REFUSALS = ("not_an_ack", "untrusted_cloud", "invalid", "above_head")


@dataclass(frozen=True)
class Ack:
    """``cloud`` holds ``feed``'s entries ``1..seq``."""

    feed: bytes
    seq: int
    cloud: bytes


def ack_of(entry: Entry) -> Ack | None:
    """The acknowledgement an ``_acks`` entry carries, or None if malformed."""
    if entry.collection != ACKS_COLLECTION or entry.doc_id is None:
        return None
    try:
        feed = NodeId.parse(entry.doc_id).key
        seq = parse_ack_body(entry.body)
    except (ValueError, LichenError):
        return None
    return Ack(feed, seq, entry.author)


@dataclass
class Screened:
    """What may be stored from one ack payload, and what was refused (by kind)."""

    accepted: list[Entry]
    refused: Counter[str]
    strangers: list[bytes]  # authors refused, in order of appearance


class AckLedger:
    """Accepted clouds, the acknowledgements they made, and what was refused."""

    def __init__(
        self, reader: LogStore, ack_from: Sequence[str] | str, pinned_file: Path, own: bytes
    ) -> None:
        self.reader = reader
        self.own = own
        self.first_seen = ack_from == FIRST_SEEN
        ids = [] if isinstance(ack_from, str) else list(ack_from)
        self.configured = frozenset(NodeId.parse(t).key for t in ids)
        self.pinned_file = pinned_file
        self.pinned: set[bytes] = self._load_pinned() if self.first_seen else set()
        self._change = 0  # the log's change counter up to which _acks were read
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSALS, 0))
        self.last_ack: Ack | None = None
        self.last_ack_ms: int | None = None

    @property
    def mode(self) -> str:
        """``"configured"``, ``"first-seen"`` or ``"none"`` (for status)."""
        if self.configured:
            return "configured"
        return FIRST_SEEN if self.first_seen else "none"

    def _load_pinned(self) -> set[bytes]:
        try:
            lines = self.pinned_file.read_text("utf-8").split()
        except FileNotFoundError:
            return set()
        out = set()
        for line in lines[:1]:  # first seen: one cloud
            try:
                out.add(NodeId.parse(line).key)
            except ValueError:
                log.warning("ignoring a malformed cloud id in %s: %r", self.pinned_file, line)
        return out

    @property
    def trusted(self) -> frozenset[bytes]:
        return self.configured | frozenset(self.pinned)

    def is_cloud(self, author: bytes) -> bool:
        return author in self.trusted

    # ------------------------------------------------------- the ack topic

    def screen(self, entries: Iterable[Entry]) -> Screened:
        """Of the entries that came on this node's ack topic, those an uplink may
        store: ``_acks``, ``_time`` and ``_commands`` entries of accepted clouds.
        With ``first-seen`` and no cloud yet, the author of the first
        acknowledgement whose signature verifies becomes the cloud (remembered
        in ``HOME/state/clouds``)."""
        out = Screened([], Counter(), [])
        for entry in entries:
            if entry.collection not in FROM_CLOUD:
                kind = "not_an_ack"
            elif entry.author in self.trusted or self._pin_first(entry):
                out.accepted.append(entry)
                continue
            else:
                kind = "untrusted_cloud"
            out.refused[kind] += 1
            if entry.author not in out.strangers:
                out.strangers.append(entry.author)
        self.refused.update(out.refused)
        return out

    def count_invalid(self, n: int) -> None:
        self.refused["invalid"] += n

    def _pin_first(self, entry: Entry) -> bool:
        """With ``first-seen`` and no cloud yet: pin the author of ``entry`` if it is
        a well-formed acknowledgement whose signature verifies."""
        if not self.first_seen or self.pinned or ack_of(entry) is None:
            return False
        try:
            verify_entry(entry)
        except ValueError:
            return False
        self.pinned = {entry.author}
        self.pinned_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.pinned_file, f"{NodeId(entry.author)}\n".encode())
        log.warning(
            "trusting cloud %s: the first acknowledgement seen over this node's uplink "
            '([retention] ack_from = "first-seen"); no other cloud will count. To choose '
            'clouds explicitly: [retention] ack_from = ["lc1…"]',
            NodeId(entry.author),
        )
        self.rescan()
        return True

    # ------------------------------------------------- acknowledgements

    def rescan(self) -> None:
        """Read every ``_acks`` entry again (after a cloud became trusted)."""
        self._change = 0

    def new_acks(self) -> list[Ack]:
        """Acknowledgements by trusted clouds stored since the last call."""
        trusted = self.trusted
        last = self.reader.last_change()
        if not trusted or last <= self._change:
            return []
        acks: list[Ack] = []
        # `+collection` keeps SQLite on the primary key: only the new rows are read
        cid = self.reader.connection.execute(
            "SELECT id FROM collections WHERE name = ?", (ACKS_COLLECTION,)
        ).fetchone()
        if cid is not None:
            rows = self.reader.connection.execute(
                "SELECT change, raw FROM entries WHERE change > ? AND +collection = ? "
                "ORDER BY change",
                (self._change, cid[0]),
            )
            for change, raw in rows:
                last = max(last, int(change))
                entry = decode_entry(bytes(raw), strict=False, max_size=len(raw))
                ack = ack_of(entry)
                if ack is not None and ack.cloud in trusted:
                    acks.append(ack)
        self._change = last
        return acks

    def recording(self, acks: Iterable[Ack], now_ms: int) -> RecordAcks:
        """The write that records ``acks`` (of clouds trusted now), for the writer."""
        return RecordAcks(tuple(acks), self.trusted, self.own, now_ms)

    def recorded(self, result: AcksRecorded) -> list[Ack]:
        """Count and log what :class:`RecordAcks` refused; return what advanced."""
        for ack, held in result.above_head:
            self.refused["above_head"] += 1
            log.warning(
                "acknowledgement above this node's head refused: cloud %s acknowledges "
                "seq %d of this node's feed, whose head is %d (a forged or a confused "
                "cloud; nothing is pruned on its word)",
                NodeId(ack.cloud), ack.seq, held,
            )  # fmt: skip
        return result.advanced

    def reconciling(self) -> ForgetAcks:
        """The write, at start, that forgets what clouds no longer trusted
        acknowledged, and acknowledgements above the head held (the scan from
        change 0 that follows records what still counts)."""
        return ForgetAcks(self.trusted)

    @staticmethod
    def forgot(feeds: int) -> None:
        """Say that :class:`ForgetAcks` forgot the acknowledgements of ``feeds`` feeds."""
        if feeds:
            log.warning(
                "forgot the acknowledgements of %d feeds: their cloud is no longer trusted "
                "([retention] ack_from) or they were above the head held here; what they "
                "covered is uploaded again",
                feeds,
            )


@dataclass(frozen=True)
class AcksRecorded:
    """What :class:`RecordAcks` did: the acknowledgements that advanced what was
    known, and those refused for naming more than this node's own feed holds
    (with the head held)."""

    advanced: list[Ack]
    above_head: list[tuple[Ack, int]]


@dataclass(frozen=True, slots=True)
class RecordAcks:
    """A write (:mod:`agent.store.commands`): record ``acks`` of the ``trusted``
    clouds, each only up to the head held here — a cloud may hold more of another
    feed than this node (then what is here counts), but an acknowledgement above
    this node's own head (``own``) is refused: nothing is pruned on its word."""

    acks: Sequence[Ack]
    trusted: frozenset[bytes]
    own: bytes
    now_ms: int

    def apply(self, store: LogStore) -> AcksRecorded:
        out = AcksRecorded([], [])
        for ack in self.acks:
            if ack.cloud not in self.trusted:
                continue
            head = store.head(ack.feed)
            held = 0 if head is None else head.seq
            seq = ack.seq
            if seq > held:
                if ack.feed == self.own:
                    out.above_head.append((ack, held))
                    continue
                seq = held
            if seq > 0 and store.delivery.record_ack_now(ack.feed, seq, ack.cloud, self.now_ms):
                out.advanced.append(Ack(ack.feed, seq, ack.cloud))
        return out


@dataclass(frozen=True, slots=True)
class ForgetAcks:
    """A write: forget the acknowledgements of clouds not ``trusted`` and those
    above the head held; the result is how many feeds' were forgotten."""

    trusted: frozenset[bytes]

    def apply(self, store: LogStore) -> int:
        forgotten = 0
        for feed, seq, cloud, _at in store.delivery.ack_details():
            head = store.head(feed)
            if cloud not in self.trusted or seq > (0 if head is None else head.seq):
                store.delivery.forget_ack_now(feed)
                forgotten += 1
        return forgotten
