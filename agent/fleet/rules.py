"""Per-collection rules of a fleet: which groups may write a collection, which may read it.

A rule is an admin's entry of ``_fleet`` (the fold in :mod:`.document` decides
whether its author counts, as for every other operation)::

    {"op": "rule", "fleet", "collection": pattern, "write": [group…], "read": [group…],
     "carry": [group…], "sealed": true}

``collection`` is a **pattern**: a collection name (``climate``), or a prefix
ending in ``*`` (``readings/*``, ``climate*``; ``*`` alone is every
collection). ``write`` and ``read`` each list the groups whose members may;
a field left out means *everyone*, as without a rule, and an empty list
means nobody. ``carry`` lists groups whose members are sent the entries too,
to relay them, though they may not read them (:func:`may_carry`); ``sealed``
(true) seals the entries' bodies to the readers (:mod:`.sealing`), so a
carrier holds only ciphertext. A rule with none of the four takes the
pattern's rule away.

Which rule applies to a collection: the rule of its exact name; otherwise
that of the longest prefix pattern it starts with; otherwise none. A later
rule for the same pattern replaces the earlier one (the fold's order).
**Internal collections** — names starting with ``_`` (``_fleet``, ``_acks``,
``_commands``…) — are Lichen's own and never subject to rules; a rule naming
one is ignored with that reason.

Who may, under a rule (:func:`may_read`, :func:`may_write`): an approved,
unrevoked member with at least one of the listed groups. Admins and the
founder are not exempt (an admin that must write or read a ruled collection
puts itself in a group: ``lichen fleet group``); pending members and nodes
outside the fleet have no group that counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..entry import check_collection

__all__ = [
    "MAX_GROUPS",
    "Rule",
    "apply_rule",
    "check_groups",
    "check_pattern",
    "may_carry",
    "may_read",
    "may_write",
    "rule_for",
]

MAX_GROUPS = 32
MAX_GROUP_LEN = 64
WILDCARD = "*"


def check_pattern(pattern: object) -> str:
    """``pattern`` if it is a collection name or a prefix ending in ``*`` (not an
    internal collection's); else :class:`ValueError` naming what is wrong."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"collection pattern {pattern!r} must be a non-empty text")
    if pattern.startswith("_"):
        raise ValueError(
            f"{pattern!r} names an internal collection (starting with '_'): "
            "those are not subject to rules"
        )
    prefix = pattern[:-1] if pattern.endswith(WILDCARD) else pattern
    if WILDCARD in prefix:
        raise ValueError(f"collection pattern {pattern!r} may hold '*' only at its end")
    if prefix:
        check_collection(prefix + "x" if pattern.endswith(WILDCARD) else prefix)
    return pattern


def check_groups(groups: object, what: str = "groups") -> tuple[str, ...]:
    """The sorted, distinct group names of ``groups`` (a list of names); else
    :class:`ValueError` naming what is wrong."""
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise ValueError(f"{what} is not a list of at most {MAX_GROUPS} names")
    for g in groups:
        if not isinstance(g, str) or not 1 <= len(g) <= MAX_GROUP_LEN or "," in g:
            raise ValueError(f"{what} holds {g!r}, not a group name (1-{MAX_GROUP_LEN} characters)")
    return tuple(sorted(set(groups)))


class Member(Protocol):
    """What a rule asks of a member (:class:`~agent.fleet.document.Member`)."""

    @property
    def approved(self) -> bool: ...

    @property
    def revoked(self) -> bool: ...

    @property
    def groups(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """The rule of one pattern as the fold leaves it; ``write``/``read`` None: everyone."""

    pattern: str
    write: tuple[str, ...] | None = None
    read: tuple[str, ...] | None = None
    set_by: bytes | None = None
    ts: int = 0
    carry: tuple[str, ...] | None = None
    sealed: bool = False

    @property
    def prefix(self) -> bool:
        return self.pattern.endswith(WILDCARD)

    def matches(self, collection: str) -> bool:
        if self.prefix:
            return collection.startswith(self.pattern[:-1])
        return collection == self.pattern


def apply_rule(rules: dict[str, Rule], body: Mapping[str, Any], author: bytes, ts: int) -> str:
    """Apply an admin's ``rule`` entry to ``rules``; the reason it does not count, or ""."""
    try:
        pattern = check_pattern(body.get("collection"))
        write = check_groups(body["write"], "write") if "write" in body else None
        read = check_groups(body["read"], "read") if "read" in body else None
        carry = check_groups(body["carry"], "carry") if "carry" in body else None
    except ValueError as exc:
        return str(exc)
    sealed = body.get("sealed", False)
    if not isinstance(sealed, bool):
        return "sealed is not true or false"
    if write is None and read is None and carry is None and not sealed:
        rules.pop(pattern, None)
    else:
        rules[pattern] = Rule(pattern, write, read, author, ts, carry=carry, sealed=sealed)
    return ""


def rule_for(rules: Mapping[str, Rule], collection: str) -> Rule | None:
    """The rule that applies to ``collection``: its exact name's, else the longest
    matching prefix pattern's, else None (internal collections: always None)."""
    if collection.startswith("_") or not rules:
        return None
    exact = rules.get(collection)
    if exact is not None:
        return exact
    found = [r for r in rules.values() if r.prefix and r.matches(collection)]
    return max(found, key=lambda r: len(r.pattern)) if found else None


def _in_groups(member: Member | None, groups: tuple[str, ...]) -> bool:
    return (
        member is not None
        and member.approved
        and not member.revoked
        and not set(member.groups).isdisjoint(groups)
    )


def may_read(rules: Mapping[str, Rule], member: Member | None, collection: str) -> bool:
    """May ``member`` (None: a node outside the fleet) receive entries of ``collection``?"""
    rule = rule_for(rules, collection)
    return rule is None or rule.read is None or _in_groups(member, rule.read)


def may_carry(rules: Mapping[str, Rule], member: Member | None, collection: str) -> bool:
    """May ``member`` receive entries of ``collection`` to relay them (a ``carry``
    group's member), whether or not it may read them?"""
    rule = rule_for(rules, collection)
    return rule is not None and rule.carry is not None and _in_groups(member, rule.carry)


def may_write(rules: Mapping[str, Rule], member: Member | None, collection: str) -> bool:
    """May entries of ``collection`` by ``member`` (None: a node outside the fleet)
    be stored? Only the rule's part: the policy refuses pending and revoked
    members' entries besides."""
    rule = rule_for(rules, collection)
    return rule is None or rule.write is None or _in_groups(member, rule.write)
