"""The fleet as the cloud sees it: members admitted, the fleet's rules applied.

A cloud that knows its fleet (``[cloud] fleet = "lf1…"``, or the fleet this
node joined: ``HOME/state/fleet.json``) folds the ``_fleet`` entries it
ingests — from MQTT batches and from bundles — with the same fold as every
node (:func:`agent.fleet.fold`), and admits their authors besides its trust
store:

* a ``_fleet`` entry is taken from a member (in any state: the fold decides
  what counts), and the fleet's genesis from anyone (its hash is the fleet
  id: it cannot be forged), whoever uploads them; the ingestion core judges
  a message's ``_fleet`` entries first, so a batch that carries the
  approval of its author's entries is stored whole (a board that joined
  uploads the document it received, which is how a cloud learns it);
* every other entry goes through the fleet's access policy
  (:func:`agent.fleet.view.write_refusal`, the ``may_write`` of every fleet
  node): a pending member's entries are refused (kind ``pending``), a
  revoked member's above its revocation's cut (kind ``revoked``), and an
  entry of a collection whose rule does not let its author write it (kind
  ``rule``) — whether its author is a member or a board of the trust store.

:class:`CloudFleet` is safe to use from the ingestion core's threads: it
adds entries under a lock and replaces the membership whole.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..entry import Entry
from ..errors import ConfigError
from ..fleet import (
    COLLECTION,
    Keyring,
    Membership,
    fleet_id_of,
    fold,
    format_fleet_id,
    parse_fleet_id,
    read_fleet_file,
)
from ..fleet.view import write_refusal
from .core import Judgement
from .sink import EntryQuery, SinkError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..config.cloud import CloudConfig
    from ..home import Home
    from ..identity import Identity
    from ..store.log_store import LogStore
    from .sink import Sink

#: how often a message's _fleet entries are judged again when one of them changed who
#: is a member (the genesis, then the founder's add of the uploading board, …)
DOCUMENT_PASSES = 8

__all__ = ["CloudFleet", "cloud_fleet", "load_fleet", "sealed_reader"]


class CloudFleet:
    """The membership of ``fleet`` folded from the ``_fleet`` entries learnt."""

    def __init__(self, fleet: bytes) -> None:
        self.fleet = fleet
        self.membership = Membership(fleet)
        self._entries: dict[tuple[bytes, int], Entry] = {}
        self._lock = threading.Lock()

    @property
    def fleet_id(self) -> str:
        return format_fleet_id(self.fleet)

    def is_genesis(self, entry: Entry) -> bool:
        """``entry`` founds this fleet (its ``create`` entry)."""
        body = entry.body
        return (
            entry.collection == COLLECTION
            and isinstance(body, dict)
            and body.get("op") == "create"
            and fleet_id_of(entry) == self.fleet
        )

    def names_fleet(self, entry: Entry) -> bool:
        """A ``_fleet`` entry of this fleet (its genesis, or naming its id)."""
        if entry.collection != COLLECTION or not isinstance(entry.body, dict):
            return False
        return entry.body.get("fleet") == self.fleet or self.is_genesis(entry)

    def admits(self, author: bytes) -> bool:
        """Is ``author`` a member, in any state (the access policy judges its entries)?"""
        return author in self.membership.members

    def may_upload(self, uploader: bytes, entry: Entry) -> bool:
        """May ``uploader`` publish ``entry`` of another author: a current member
        (not revoked) may; anyone may carry the fleet's document (its genesis, a
        member's entries naming the fleet), which the fold judges by its authors."""
        if self.membership.is_member(uploader):
            return True
        return self.names_fleet(entry) and self.admits_entry(entry)

    def admits_entry(self, entry: Entry) -> bool:
        """A member's entry, or the fleet's genesis from anyone."""
        return self.admits(entry.author) or self.is_genesis(entry)

    def refusal(self, entry: Entry) -> tuple[str, str] | None:
        """``(kind, reason)`` if the fleet's policy refuses ``entry``, else None."""
        return write_refusal(self.membership, entry.author, entry.collection, entry.seq)

    def learn(self, entries: Iterable[Entry]) -> bool:
        """Add the verified ``_fleet`` entries of this fleet among ``entries`` and
        fold again if there were new ones; True if the membership changed."""
        with self._lock:
            new = False
            for entry in entries:
                key = (entry.author, entry.seq)
                if key not in self._entries and self.names_fleet(entry):
                    self._entries[key] = entry
                    new = True
            if not new:
                return False
            before = self.membership.signature()
            self.membership = fold(self._entries.values(), self.fleet)
            return self.membership.signature() != before

    def judge_document_first(
        self,
        verdict: Judgement,
        decoded: Sequence[tuple[int, bytes, Entry]],
        judge: Callable[[Judgement, int, bytes, Entry], None],
    ) -> None:
        """Judge a message's decoded entries (``(index, raw, entry)``) with
        ``judge``: its ``_fleet`` entries first, learnt, and judged again while
        that changed who is a member — so an approval, the genesis or the add of
        the uploading board counts for the entries beside it — then the others."""
        document = [d for d in decoded if d[2].collection == COLLECTION]
        for _ in range(DOCUMENT_PASSES):
            if not document:
                break
            scratch = Judgement(verdict.topic, None, 0)
            for index, raw, entry in document:
                judge(scratch, index, raw, entry)
            verdict.accepted += scratch.accepted
            verdict.notes += scratch.notes
            changed = self.learn(a.entry for a in scratch.accepted)
            refused = {r.index for r in scratch.rejections}
            if not changed or not refused:
                verdict.rejections += scratch.rejections
                break
            document = [d for d in document if d[0] in refused]  # judged again
        for index, raw, entry in decoded:
            if entry.collection != COLLECTION:
                judge(verdict, index, raw, entry)
        verdict.accepted.sort(key=lambda a: a.index)
        verdict.rejections.sort(key=lambda r: -1 if r.index is None else r.index)

    @property
    def entries(self) -> int:
        return len(self._entries)

    def status(self) -> dict[str, object]:
        """The ``fleet`` part of the cloud's status."""
        members = self.membership.members.values()
        return {
            "id": self.fleet_id,
            "entries": self.entries,
            "members": sum(1 for m in members if not m.revoked),
            "approved": sum(1 for m in members if m.approved and not m.revoked),
            "pending": sum(1 for m in members if not m.approved and not m.revoked),
            "revoked": sum(1 for m in members if m.revoked),
            "rules": len(self.membership.rules),
        }


def cloud_fleet(cloud: CloudConfig, home: Home) -> CloudFleet | None:
    """The fleet a cloud admits: ``[cloud] fleet``, else the fleet this node
    joined (``HOME/state/fleet.json``), else None."""
    if not cloud.fleet:
        joined = read_fleet_file(home.fleet_file)
        return None if joined is None else CloudFleet(joined)
    try:
        return CloudFleet(parse_fleet_id(cloud.fleet))
    except ValueError as exc:
        fix = "copy it from lichen fleet members on a node of the fleet"
        raise ConfigError(str(exc), file="lichen.toml", key="[cloud] fleet", fix=fix) from None


async def load_fleet(fleet: CloudFleet, sink: Sink, own: LogStore) -> bool:
    """Learn the ``_fleet`` entries the sink holds, and this node's own log (the
    document a joined cloud received); True if the membership changed.
    :class:`SinkError` if the sink cannot be read (what was learnt stays)."""

    def read() -> list[Entry]:
        try:
            reader = sink.reader()
            try:
                return list(reader.entries(EntryQuery(collection=COLLECTION)))
            finally:
                reader.close()
        except SinkError:
            raise
        except Exception as exc:  # the database's own error (sqlite3, psycopg): retried
            raise SinkError(f"reading the fleet document failed: {exc}") from exc

    held = await asyncio.to_thread(read)
    return fleet.learn([*held, *own.by_time(COLLECTION)])


def sealed_reader(
    fleet: CloudFleet, identity: Identity
) -> Callable[[Iterable[Entry]], Iterator[Entry]]:
    """What the cloud's API reads through: entries of sealed collections opened
    where the cloud (``identity``, a member in a rule's ``read`` groups) was
    handed their key generation, left out where it was not; the others as they
    are. The entries stay sealed in the sink."""
    keyring = Keyring(identity)

    def readable(entries: Iterable[Entry]) -> Iterator[Entry]:
        return iter(keyring.readable(fleet.membership, entries))

    return readable
