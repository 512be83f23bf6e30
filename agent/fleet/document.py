"""The fleet document: admin-signed entries in ``_fleet`` folded into the membership.

A fleet is a set of nodes and the admins who run it. It is written down as
ordinary entries of the collection ``_fleet`` (so it spreads by gossip, by
bundles, by mules, like any collection); each entry is signed by its author,
and an entry counts only if its author is an admin of the fleet at that point.
This module is sans-IO: :func:`fold` takes entries (in any order) and returns
the current :class:`Membership`; nothing here reads a store or a clock.

Bodies (CBOR maps; ``fleet`` is the 16-byte fleet id, ``node`` a 32-byte key)::

    {"op": "create", "name": str}                            the genesis, by the first admin
    {"op": "add", "fleet", "node", "role", "groups", "invite"}  member added (pending)
    {"op": "approve", "fleet", "node"}                       its writes count from now on
    {"op": "revoke", "fleet", "node", "upto", "reason"}      out for good
    {"op": "grant-admin", "fleet", "node"}                   an approved member becomes admin
    {"op": "drop-admin", "fleet", "node"}                    an admin becomes a plain member
    {"op": "rule", "fleet", "collection", "write", "read", "carry", "sealed"}
                                                   who may write, read, carry (:mod:`.rules`)
    {"op": "key", "fleet", "collection", "gen", "public", "keys"}
                                                   a sealed rule's key generation (:mod:`.sealing`)

The fleet id is derived from the genesis (:func:`fleet_id_of`): BLAKE2b-128 of
the first admin's key and the creation entry's hash, so two fleets never share
an id and a forged genesis names a different fleet.

**The rule.** Entries are put in one total order — by hybrid-logical-clock
timestamp, then author key, then seq — and applied one after another. An
entry counts if its author is, at that point, an approved, unrevoked admin;
otherwise it is ignored and reported (:attr:`Membership.ignored`). Concurrent
actions therefore resolve by that order: the later ``add`` sets role and
groups; ``approve`` is permanent; **revocation is final** (a revoked node
stays revoked: a later ``add`` or ``approve`` of it is ignored); of an
admin dropping another admin and that admin dropping it, the first in the
order wins (the other's entry no longer has an admin author). The last
admin cannot be removed or revoked (the entry is ignored), so a fleet never
locks itself out.

A revocation also names ``upto``: the highest seq of the revoked node's feed
its author held. Every entry of the revoked node with a higher seq is
ignored, whatever its timestamp — so a stolen admin key cannot write
back-dated admin actions. Revocations are settled before the rest, **senior
admin first** (the founder, then admins in the order they became one): a
revocation whose author an earlier-settled one cut off below it does not
count. Of two admins revoking each other the senior one wins, and a revoked
admin's back-dated revocation of the admin who revoked it never counts. A
revocation that then fails in the ordered pass (its author was not an admin
at that point, or it would revoke the last admin) loses its cut, and the
fold runs again (cuts only ever go away or loosen, so this ends).

Because the result is a function of the *set* of entries, every delivery
order gives the same membership (tests/test_fleet_document.py checks it with
Hypothesis).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..entry import Entry
from .rules import MAX_GROUPS, Rule, apply_rule, rule_for
from .sealing import Generation, apply_key

__all__ = [
    "COLLECTION",
    "ROLES",
    "Ignored",
    "Member",
    "Membership",
    "fleet_id_of",
    "fold",
    "format_fleet_id",
    "op_body",
    "parse_fleet_id",
]

COLLECTION = "_fleet"
ROLES = ("member", "admin")
OPS = ("create", "add", "approve", "revoke", "grant-admin", "drop-admin", "rule", "key")
FLEET_ID_LEN = 16
_PREFIX = "lf1"


def fleet_id_of(genesis: Entry) -> bytes:
    """The id of the fleet ``genesis`` (a ``create`` entry) founds."""
    return hashlib.blake2b(
        genesis.author + genesis.hash, digest_size=FLEET_ID_LEN, person=b"lichen-fleet-id"
    ).digest()


def _check(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=2, person=b"lichen-fleet").digest()


def format_fleet_id(raw: bytes) -> str:
    """``lf1`` + base32 of the id and a 2-byte checksum (32 characters)."""
    return _PREFIX + base64.b32encode(raw + _check(raw)).decode().rstrip("=").lower()


def parse_fleet_id(text: str) -> bytes:
    """The 16 id bytes of ``lf1…``; :class:`ValueError` naming what is wrong."""
    text = text.strip()
    if not text.startswith(_PREFIX):
        raise ValueError(f"fleet id {text!r} does not start with {_PREFIX!r}")
    body = text[len(_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise ValueError(f"fleet id {text!r} is not base32: {exc}") from None
    if len(raw) != FLEET_ID_LEN + 2 or _check(raw[:FLEET_ID_LEN]) != raw[FLEET_ID_LEN:]:
        raise ValueError(f"fleet id {text!r} is mistyped (its checksum does not match)")
    return raw[:FLEET_ID_LEN]


def op_body(
    op: str, fleet: bytes | None = None, node: bytes | None = None, **fields: Any
) -> dict[str, Any]:
    """The body of a ``_fleet`` entry (see the module docstring)."""
    if op not in OPS:
        raise ValueError(f"unknown fleet operation {op!r}")
    body: dict[str, Any] = {"op": op}
    if fleet is not None:
        body["fleet"] = fleet
    if node is not None:
        body["node"] = node
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


@dataclass(frozen=True, slots=True)
class Member:
    """One node of the fleet as the fold leaves it."""

    node: bytes
    role: str = "member"
    groups: tuple[str, ...] = ()
    approved: bool = False
    revoked: bool = False
    added_by: bytes | None = None
    added_ts: int = 0
    approved_by: bytes | None = None
    revoked_by: bytes | None = None
    revoked_upto: int | None = None
    reason: str = ""

    @property
    def admin(self) -> bool:
        """Acts as an admin: role admin, approved, not revoked."""
        return self.role == "admin" and self.approved and not self.revoked

    @property
    def state(self) -> str:
        return "revoked" if self.revoked else "approved" if self.approved else "pending"


@dataclass(frozen=True, slots=True)
class Ignored:
    """An entry of ``_fleet`` that does not count, and why."""

    author: bytes
    seq: int
    hash: bytes
    reason: str


@dataclass(slots=True)
class Membership:
    """The fleet as of the entries folded: ``members`` by node key (revoked ones
    included, marked), what was ignored, and the genesis (None: not seen yet)."""

    fleet: bytes
    founded_by: bytes | None = None
    name: str = ""
    members: dict[bytes, Member] = field(default_factory=dict)
    ignored: list[Ignored] = field(default_factory=list)
    admin_rank: dict[bytes, int] = field(default_factory=dict)  # seniority: 0 the founder
    rules: dict[str, Rule] = field(default_factory=dict)  # by collection pattern
    keys: dict[str, list[Generation]] = field(default_factory=dict)  # by pattern, oldest first

    def get(self, node: bytes) -> Member | None:
        return self.members.get(node)

    def admins(self) -> list[bytes]:
        return sorted(k for k, m in self.members.items() if m.admin)

    def is_member(self, node: bytes) -> bool:
        """In the fleet and not revoked (pending or approved)."""
        m = self.members.get(node)
        return m is not None and not m.revoked

    def is_approved(self, node: bytes) -> bool:
        m = self.members.get(node)
        return m is not None and m.approved and not m.revoked

    def is_revoked(self, node: bytes) -> bool:
        m = self.members.get(node)
        return m is not None and m.revoked

    def rule_for(self, collection: str) -> Rule | None:
        """The per-collection rule that applies to ``collection`` (None: everyone may)."""
        return rule_for(self.rules, collection)

    def generation(self, kid: bytes) -> Generation | None:
        """The key generation whose key id is ``kid`` (None: not handed out here)."""
        for gens in self.keys.values():
            for gen in gens:
                if gen.kid == kid:
                    return gen
        return None

    def signature(self) -> tuple[Any, ...]:
        """What the trust decision and the access policy depend on (for change detection)."""
        members = sorted(
            (k, m.role, m.groups, m.approved, m.revoked) for k, m in self.members.items()
        )
        rules = sorted((r.pattern, r.write, r.read, r.carry) for r in self.rules.values())
        return (tuple(members), tuple(rules))


def _order(entry: Entry) -> tuple[int, bytes, int]:
    return (entry.ts, entry.author, entry.seq)


def fold(entries: Iterable[Entry], fleet: bytes) -> Membership:
    """The membership of ``fleet`` from ``entries`` of ``_fleet`` (any order,
    duplicates allowed; entries of other collections or fleets are skipped)."""
    unique = {e.hash: e for e in entries if e.collection == COLLECTION}
    found = [e for e in unique.values() if _op(e) == "create" and fleet_id_of(e) == fleet]
    genesis = found[0] if found else None
    ordered = sorted(
        (e for e in unique.values() if isinstance(e.body, dict) and e.body.get("fleet") == fleet),
        key=_order,
    )
    cuts = _revocation_cuts(fleet, genesis, ordered)
    while True:
        state, counted = _apply(fleet, genesis, ordered, cuts)
        # a cut whose revocations did not count after all goes (or loosens to
        # what did count); cuts only go away or loosen, so this ends
        settled = {n: max(upto, counted[n]) for n, upto in cuts.items() if n in counted}
        if settled == cuts:
            return state
        cuts = settled


def _revocation_cuts(fleet: bytes, genesis: Entry | None, ordered: list[Entry]) -> dict[bytes, int]:
    """The seq cuts of revocations, decided before the fold: revocations are taken
    senior admin first (the founder, then admins in the order they became one,
    in a fold that ignores revocations), and one whose author an earlier one
    already cut below it is dropped. So of two admins revoking each other the
    senior one wins, and a revoked admin's back-dated revocation of the admin
    who revoked it does not count."""
    rank = _apply(fleet, genesis, ordered, {}, revocations=False)[0].admin_rank
    revokes = [
        e for e in ordered
        if _op(e) == "revoke" and e.author in rank
        and isinstance(e.body.get("node"), bytes) and _valid_upto(e.body.get("upto", 0))
    ]  # fmt: skip
    revokes.sort(key=lambda e: (rank[e.author], _order(e)))
    cuts: dict[bytes, int] = {}
    for e in revokes:
        if e.author in cuts and e.seq > cuts[e.author]:
            continue
        node, upto = e.body["node"], e.body.get("upto", 0)
        cuts[node] = min(upto, cuts.get(node, upto))
    return cuts


def _valid_upto(upto: object) -> bool:
    return isinstance(upto, int) and not isinstance(upto, bool) and upto >= 0


def _op(entry: Entry) -> str | None:
    body = entry.body
    return body.get("op") if isinstance(body, dict) and isinstance(body.get("op"), str) else None


def _apply(
    fleet: bytes,
    genesis: Entry | None,
    ordered: list[Entry],
    cuts: dict[bytes, int],
    *,
    revocations: bool = True,
) -> tuple[Membership, dict[bytes, int]]:
    """One pass in order; returns the membership and the cuts of the revocations
    that counted."""
    state = Membership(fleet)
    found: dict[bytes, int] = {}
    if genesis is None:
        for e in ordered:
            state.ignored.append(
                Ignored(e.author, e.seq, e.hash, "the fleet's creation entry is not here yet")
            )
        return state, found
    body = genesis.body
    state.founded_by = genesis.author
    state.name = body.get("name", "") if isinstance(body.get("name", ""), str) else ""
    state.members[genesis.author] = Member(
        genesis.author, "admin", approved=True, added_by=genesis.author, added_ts=genesis.ts,
        approved_by=genesis.author,
    )  # fmt: skip
    members = state.members
    state.admin_rank[genesis.author] = 0
    for e in ordered:
        if not revocations and _op(e) == "revoke":
            continue
        if e.ts < genesis.ts or (e.author == genesis.author and e.seq <= genesis.seq):
            reason = "older than the fleet's creation"
        elif e.author in cuts and e.seq > cuts[e.author]:
            reason = "written after its author was revoked"
        else:
            author = members.get(e.author)
            if author is None or not author.admin:
                what = (
                    "a revoked node" if author and author.revoked else "a node that is not an admin"
                )
                reason = f"signed by {what}"
            elif _op(e) == "rule":
                reason = apply_rule(state.rules, e.body, e.author, e.ts)
            elif _op(e) == "key":
                reason = apply_key(state.keys, e.body, e.author, e.ts)
            else:
                reason = _one(members, e, found)
                target = members.get(e.body.get("node"))
                if target is not None and target.admin and target.node not in state.admin_rank:
                    state.admin_rank[target.node] = len(state.admin_rank)
        if reason:
            state.ignored.append(Ignored(e.author, e.seq, e.hash, reason))
    return state, found


def _one(members: dict[bytes, Member], e: Entry, found: dict[bytes, int]) -> str:
    """Apply one admin's entry to ``members``; the reason it does not count, or ""."""
    body: dict[str, Any] = e.body
    op, node = body.get("op"), body.get("node")
    if op not in OPS or op == "create":
        return f"unknown or misplaced operation {op!r}"
    if not isinstance(node, bytes) or len(node) != 32:
        return "no valid node key"
    current = members.get(node)
    if current is not None and current.revoked:
        return "the node is revoked (revocation is final)"
    last_admin = (
        current is not None and current.admin and len([m for m in members.values() if m.admin]) == 1
    )
    if op == "add":
        role, groups = body.get("role", "member"), body.get("groups", [])
        if role not in ROLES:
            return f"unknown role {role!r}"
        if (
            not isinstance(groups, list)
            or len(groups) > MAX_GROUPS
            or not all(isinstance(g, str) for g in groups)
        ):
            return "groups is not a list of names"
        if current is None:
            current = Member(node, added_by=e.author, added_ts=e.ts)
        elif role == "member" and last_admin:
            return "it would remove the last admin"
        members[node] = replace(current, role=role, groups=tuple(sorted(set(groups))))
    elif current is None:
        if op != "revoke":
            return "the node is not a member"
        current = Member(node)  # revoked before it was added here: stays out
    if op == "approve":
        if not current.approved:
            members[node] = replace(current, approved=True, approved_by=e.author)
    elif op == "revoke":
        if last_admin:
            return "it would revoke the last admin"
        upto = body.get("upto", 0)
        if not _valid_upto(upto):
            return "upto is not a seq"
        reason = body.get("reason", "")
        members[node] = replace(
            current, revoked=True, revoked_by=e.author, revoked_upto=upto,
            reason=reason if isinstance(reason, str) else "",
        )  # fmt: skip
        found[node] = upto
    elif op == "grant-admin":
        if not current.approved:
            return "only an approved member can become an admin"
        members[node] = replace(current, role="admin")
    elif op == "drop-admin":
        if current.role != "admin":
            return "the node is not an admin"
        if last_admin:
            return "it would remove the last admin"
        members[node] = replace(current, role="member")
    return ""
