"""Whom to sync with, and when: the gossip scheduler's decisions, without I/O.

The planner keeps one :class:`Target` per dialable address — static peers from
the configuration (and ``lichen run --peer``) and peers seen by a transport
(an mDNS record, a BLE advertisement). :meth:`GossipPlanner.due` says which to
dial now:

* a target is due when its ``next_attempt`` time has come: at once when it is
  new, ``sync_interval`` after a successful sync, and after a jittered,
  doubling backoff after a failure (:class:`~agent.backoff.Backoff`: about
  1 s, 2 s, 4 s … 5 min, each ±50 %; a heavily penalised peer waits 5 min);
* a sighting whose heads digest differs from the one we last synced makes the
  target due at once — its owner has something new — while an unchanged digest
  leaves it alone (nothing to fetch, nothing to wake a radio for);
* a target of a transport that dials on sightings only (BLE:
  ``Transport.dial_on_sighting``) is not dialled again on a timer after a
  successful session: only a new sighting, which says there is something to
  exchange, makes it due; and a sighting after :data:`~agent.link_api.NEW_CONTACT_S`
  without one (the node was out of range, and is back) makes it due even after
  failed dials — a node passing by again must not wait out a backoff earned
  while it was away;
* a target with a session already open (live) is never dialled again;
* at most ``max_sessions`` sessions at once, and per transport at most its
  budget's sessions and bytes per hour (a metered or slow radio is spared).

The asyncio shell (:mod:`agent.mesh.gossip`) feeds it sightings and outcomes and
dials what it returns.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..backoff import Backoff
from ..config import parse_budget
from ..link_api import NEW_CONTACT_S

if TYPE_CHECKING:
    from ..config import MeshConfig

__all__ = ["GossipPlanner", "Target", "TransportBudget", "redial_backoff"]

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0
HOUR_S = 3600.0
_SPREAD = 0.5  # a redial waits d × [0.5, 1.5], d doubling from BACKOFF_MIN_S to BACKOFF_MAX_S


def redial_backoff(rng: random.Random | None = None) -> Backoff:
    """The waits before redialling a peer after failed sessions: ``d`` × [0.5, 1.5]
    with ``d`` = 1 s, 2 s, 4 s … 300 s. (:class:`~agent.backoff.Backoff` draws
    from [(1 − jitter) × c, c]: here ``c`` = 1.5 ``d`` and jitter ⅔.)"""
    high = 1 + _SPREAD
    return Backoff(BACKOFF_MIN_S * high, BACKOFF_MAX_S * high, jitter=2 * _SPREAD / high, rng=rng)


@dataclass(frozen=True)
class TransportBudget:
    """Limits for one transport scheme (``tcp``, ``ble`` …)."""

    max_sessions: int = 4
    max_bytes_per_hour: int | None = None


@dataclass
class Target:
    address: str
    static: bool = False
    node: str | None = None
    next_attempt: float = 0.0
    retry: Backoff = field(default_factory=redial_backoff)
    synced_digest: str | None = None
    seen_digest: str | None = None
    failures: int = 0
    last_sighting: float | None = None

    @property
    def scheme(self) -> str:
        return self.address.split("://", 1)[0]


@dataclass
class _Usage:
    window_start: float = 0.0
    bytes: int = 0


@dataclass
class GossipPlanner:
    sync_interval: float = 60.0
    max_sessions: int = 4
    budgets: dict[str, TransportBudget] = field(default_factory=dict)
    own_node: str | None = None
    on_sighting: frozenset[str] = frozenset()  # schemes dialled on sightings only
    rng: random.Random = field(default_factory=random.Random)
    targets: dict[str, Target] = field(default_factory=dict)
    _usage: dict[str, _Usage] = field(default_factory=dict)

    @classmethod
    def for_config(cls, config: MeshConfig, *, own_node: str | None = None) -> GossipPlanner:
        """A planner with ``[mesh]``'s interval, session cap and budgets."""
        budgets = {}
        for scheme, text in config.budgets.items():
            sessions, per_hour = parse_budget(scheme, text)
            budgets[scheme] = TransportBudget(sessions, per_hour)
        return cls(
            sync_interval=config.sync_interval,
            max_sessions=config.max_sessions,
            budgets=budgets,
            own_node=own_node,
        )

    def _target(self, address: str, node: str | None = None, now: float = 0.0) -> Target:
        """The target at ``address``; a new one (first due at ``now``) draws its
        redial delays from the planner's random source."""
        target = self.targets.get(address)
        if target is None:
            retry = redial_backoff(self.rng)
            target = self.targets[address] = Target(
                address, node=node, next_attempt=now, retry=retry
            )
        return target

    def add_static(self, address: str) -> Target:
        target = self._target(address)
        target.static = True
        return target

    def sighting(self, address: str, node: str | None, digest: str | None, now: float) -> None:
        """A transport saw ``node`` at ``address`` advertising heads ``digest``."""
        if node is not None and node == self.own_node:
            return
        target = self._target(address, node, now)
        target.node = node or target.node
        target.seen_digest = digest
        previous, target.last_sighting = target.last_sighting, now
        news = digest is not None and digest != target.synced_digest
        if target.scheme in self.on_sighting:
            news = True  # the transport reports only peers with something to exchange
            if previous is not None and now - previous >= NEW_CONTACT_S:
                target.next_attempt = min(target.next_attempt, now)  # back in range
                return
        if news and target.failures == 0:
            target.next_attempt = min(target.next_attempt, now)

    def _budget(self, scheme: str) -> TransportBudget:
        return self.budgets.get(scheme, TransportBudget())

    def _over_bytes(self, scheme: str, now: float) -> bool:
        limit = self._budget(scheme).max_bytes_per_hour
        if limit is None:
            return False
        usage = self._usage.setdefault(scheme, _Usage(now))
        if now - usage.window_start >= HOUR_S:
            usage.window_start, usage.bytes = now, 0
        return usage.bytes >= limit

    def due(
        self, now: float, active: Iterable[str], penalty: dict[str, float] | None = None
    ) -> list[str]:
        """Addresses to dial now. ``active``: addresses (or node ids) with a session open."""
        busy = set(active)
        per_scheme: dict[str, int] = {}
        for name in busy:
            target = self.targets.get(name)
            if target is not None:
                per_scheme[target.scheme] = per_scheme.get(target.scheme, 0) + 1
        free = self.max_sessions - len(busy)
        chosen: list[str] = []
        ready = sorted(
            (t for t in self.targets.values() if t.next_attempt <= now),
            key=lambda t: (t.next_attempt, t.address),
        )
        for target in ready:
            if free <= 0:
                break
            if target.address in busy or (target.node is not None and target.node in busy):
                continue
            if (penalty or {}).get(target.node or "", 0.0) >= 8.0:
                target.next_attempt = now + BACKOFF_MAX_S
                continue
            scheme = target.scheme
            if per_scheme.get(scheme, 0) >= self._budget(scheme).max_sessions:
                continue
            if self._over_bytes(scheme, now):
                continue
            chosen.append(target.address)
            per_scheme[scheme] = per_scheme.get(scheme, 0) + 1
            free -= 1
        return chosen

    def outcome(
        self,
        address: str,
        now: float,
        *,
        ok: bool,
        node: str | None = None,
        digest: str | None = None,
        wire_bytes: int = 0,
    ) -> float:
        """Record how a session to ``address`` went; returns its next attempt time."""
        target = self._target(address)
        target.node = node or target.node
        usage = self._usage.setdefault(target.scheme, _Usage(now))
        usage.bytes += wire_bytes
        if ok:
            target.failures = 0
            target.retry.reset()
            target.synced_digest = digest or target.seen_digest
            target.next_attempt = now + self.sync_interval
            if target.scheme in self.on_sighting:
                target.next_attempt = math.inf  # until a sighting says there is news
        else:
            target.failures += 1
            target.next_attempt = now + target.retry.next()
        return target.next_attempt

    def forget(self, address: str) -> None:
        """Drop a target that was only seen (static targets stay)."""
        target = self.targets.get(address)
        if target is not None and not target.static:
            del self.targets[address]
