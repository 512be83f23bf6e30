"""The fleet as a running node sees it: which fleet it is in, the membership
folded from its log, and the trust decision and access policy derived from it.

``HOME/state/fleet.json`` names the node's fleet (``{"fleet": "lf1…"}``),
written by ``lichen fleet init`` and ``lichen fleet join``; a node without it
is in no fleet and everything behaves as before (the trust store alone).
:class:`FleetView` re-folds ``_fleet`` when the collection changed — it looks
at the highest change number of the collection, one indexed query — so
entries written by the CLI, by a peer or from a bundle all count within the
agent's one-second look.

:class:`FleetPolicy` is the sync access policy of a node in a fleet:

* ``_fleet`` entries are stored from anyone (the fold decides what counts,
  and reports what does not);
* a **pending** member's entries are refused everywhere else: its writes
  count only once an admin approved it (they stay in its own log and travel
  after the approval);
* a **revoked** node's entries above the revocation's ``upto`` are refused;
  those up to it, written while it was a member, are stored and travel as
  before (what it wrote before stays, everywhere);
* approved members, and authors that are not members (a cloud's
  acknowledgements, a ``trust add`` peer's readings), are stored as before —
* unless a per-collection rule (:mod:`.rules`) names who may write the
  entry's collection: then only approved members of those groups;
* a peer is sent entries of a collection whose rule names who may read it
  only if it is an approved member of those groups (the provider skips the
  others: the peer sees a gap). Without a rule, every peer may read. A
  member of the rule's ``carry`` groups is sent them too, to relay them
  (sealed, it holds only ciphertext: :mod:`.sealing`).
Internal collections (``_fleet``, ``_acks``…) are never subject to rules.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LichenError
from ..fsutil import atomic_write
from ..identity import NodeId
from . import rules
from .document import COLLECTION, Membership, fold, format_fleet_id, parse_fleet_id
from .sealing import Keyring

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from ..entry import Entry
    from ..identity import Identity
    from ..store.log_store import Draft, LogStore

__all__ = [
    "FleetPolicy",
    "FleetSealing",
    "FleetView",
    "fleet_sealing",
    "read_fleet_file",
    "write_fleet_file",
    "write_refusal",
]


def read_fleet_file(path: Path) -> bytes | None:
    """The fleet id this node belongs to, or None (no fleet)."""
    try:
        data = json.loads(path.read_text("utf-8"))
        return parse_fleet_id(data["fleet"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LichenError(
            f"{path} is damaged ({exc}). Fix: repair it or join the fleet again"
        ) from None


def write_fleet_file(path: Path, fleet: bytes) -> None:
    atomic_write(path, json.dumps({"fleet": format_fleet_id(fleet)}).encode("utf-8"), mode=0o600)


class FleetView:
    """The membership of ``fleet`` folded from ``reader``'s ``_fleet`` entries."""

    def __init__(self, reader: LogStore, fleet: bytes) -> None:
        self.reader, self.fleet = reader, fleet
        self._seen: int | None = None
        self.membership = Membership(fleet)
        self.refresh()

    def _last_change(self) -> int:
        last = self.reader.latest_changes(1, COLLECTION)
        return last[0][0] if last else 0

    def refresh(self) -> bool:
        """Fold again if ``_fleet`` changed; True if the membership is different."""
        last = self._last_change()
        if last == self._seen:
            return False
        self._seen = last
        before = self.membership.signature()
        self.membership = fold(self.reader.by_time(COLLECTION), self.fleet)
        return self.membership.signature() != before

    def decide(self, peer: NodeId) -> str | None:
        """The fleet's part of the trust decision: None if ``peer`` is a current
        member (pending or approved); otherwise why not."""
        member = self.membership.get(peer.key)
        if member is None:
            return f"{peer} ({peer.fingerprint}) is not in fleet {format_fleet_id(self.fleet)}"
        if member.revoked:
            why = f": {member.reason}" if member.reason else ""
            return f"{peer} ({peer.fingerprint}) was revoked from the fleet{why}"
        return None


class FleetPolicy:
    """The sync access policy of a node in a fleet (see the module docstring)."""

    def __init__(self, view: FleetView) -> None:
        self.view = view

    def may_read(self, peer: bytes, collection: str) -> bool:
        membership = self.view.membership
        member = membership.get(peer)
        return rules.may_read(membership.rules, member, collection) or rules.may_carry(
            membership.rules, member, collection
        )

    def may_write(self, author: bytes, collection: str, seq: int) -> bool:
        return write_refusal(self.view.membership, author, collection, seq) is None


def write_refusal(
    membership: Membership, author: bytes, collection: str, seq: int
) -> tuple[str, str] | None:
    """Why entry ``seq`` of ``author`` in ``collection`` may not be stored, as
    ``(kind, reason)`` — kind ``pending``, ``revoked`` or ``rule`` — or None if
    it may (the access policy's ``may_write``, with its reason for the cloud's
    refusals)."""
    if collection == COLLECTION:
        return None
    member = membership.get(author)
    who = NodeId(author)
    if member is not None and member.revoked:
        # what it wrote up to the revocation's cut stays good and travels,
        # judged by the rules as the member it was then
        upto = member.revoked_upto or 0
        if seq > upto or not member.approved:
            return (
                "revoked",
                f"{who} was revoked from the fleet; its entries above seq {upto} are refused",
            )
        member = replace(member, revoked=False)
    elif member is not None and not member.approved:
        return (
            "pending",
            f"{who} is a pending member of the fleet: its writes count once an admin approves it",
        )
    if not rules.may_write(membership.rules, member, collection):
        rule = membership.rule_for(collection)
        assert rule is not None and rule.write is not None  # only a rule's write refuses
        groups = ", ".join(rule.write) or "none"
        return "rule", (
            f"{who} may not write {collection!r}: the fleet's rule for {rule.pattern!r} "
            f"lets only approved members of its write groups ({groups}) write it"
        )
    return None


class FleetSealing:
    """A node's sealed collections: what it writes to one is sealed before it is
    signed (:meth:`agent.fleet.Keyring.seal`; the object is the node's
    :attr:`agent.store.writer.LogWriter.seal`) — a draft of a sealed collection
    no key generation has reached yet is refused (:class:`~agent.fleet.SealedError`),
    never written in the clear — and what it reads is opened where it may
    (:meth:`readable`). Other entries pass unchanged."""

    def __init__(self, view: FleetView, identity: Identity) -> None:
        self.view, self.keyring = view, Keyring(identity)

    def __call__(self, drafts: Sequence[Draft]) -> list[Draft]:
        self.view.refresh()
        membership = self.view.membership
        if not any(r.sealed for r in membership.rules.values()):
            return list(drafts)
        return [self.draft(membership, d) for d in drafts]

    def readable(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        """``entries`` with sealed bodies opened; those this node may not open are
        left out, counted in :attr:`unreadable`."""
        self.view.refresh()
        yield from self.keyring.readable(self.view.membership, entries)

    @property
    def unreadable(self) -> int:
        return self.keyring.unreadable

    def draft(self, membership: Membership, draft: Draft) -> Draft:
        body = self.keyring.seal(membership, draft.collection, draft.body)
        return draft if body is draft.body else replace(draft, body=body, encoded=None)


def fleet_sealing(fleet_file: Path, reader: LogStore, identity: Identity) -> FleetSealing | None:
    """The sealer of a node whose ``fleet_file`` names a fleet (None: in no fleet)."""
    fleet = read_fleet_file(fleet_file)
    return None if fleet is None else FleetSealing(FleetView(reader, fleet), identity)
