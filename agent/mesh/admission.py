"""Which incoming connections may start a handshake: caps and rates, without I/O.

Before a handshake completes, every caller is anonymous, and the responder's
part of a Noise ``XX`` handshake costs two X25519 operations and a key pair
before it knows who calls (a third, and a signature check, once it does). So
a node limits what strangers can make it spend:

* at most ``max_handshakes`` handshakes in progress at once, and at most
  ``per_host`` of them from one host; when all slots are taken, a caller from
  a host holding fewer slots than the busiest host evicts that host's oldest
  handshake once it has run ``evict_after`` seconds (a slow-loris caller
  cannot keep others out);
* per host, ``host_rate`` handshakes per second (a burst of ``host_burst``);
* in all, ``rate`` handshakes per second (a burst of as many) from hosts this
  node has not seen a trusted peer at — the share of a core an anonymous flood
  can take is about ``rate`` times the cost of one handshake (see
  docs/performance.md). Hosts where a trusted peer completed a handshake are
  remembered (the newest 256) and pass this limit, so a flood of strangers
  does not keep known peers out;
* ``accept_rate`` connections per second are taken at all (admitted or
  refused); beyond it the shell stops accepting, and the transport leaves
  further connections to the kernel's backlog instead of spending on them.

:class:`HandshakeAdmission` is the decision and its counters, with the clock
passed in; :mod:`agent.mesh.gossip` applies it.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import MeshConfig

__all__ = ["HandshakeAdmission", "Quiet", "Ticket", "TokenBucket"]

KNOWN_HOSTS = 256
HOST_BUCKETS = 4096  # per-host rate state kept (the least recently used goes first)


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`take` spends one if there is."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, max(1.0, burst)
        self.tokens, self.at = self.burst, now

    def _fill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now

    def take(self, now: float) -> bool:
        self._fill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0 if one is)."""
        self._fill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


@dataclass(eq=False)
class Ticket:
    """One admitted handshake; ``handle`` is the shell's (its stream)."""

    host: str
    started: float
    number: int
    handle: Any = None


@dataclass
class HandshakeAdmission:
    """The limits (:meth:`for_config` derives them from ``[mesh]``, the one place
    their defaults are), the counters ``lichen status`` shows, and the state."""

    max_handshakes: int
    per_host: int
    rate: float
    host_rate: float
    host_burst: float
    accept_rate: float
    evict_after: float = 1.0
    # counters (status)
    admitted: int = 0
    refused_busy: int = 0
    refused_rate: int = 0
    refused_host: int = 0
    evicted: int = 0
    peak: int = 0
    _tickets: dict[int, Ticket] = field(default_factory=dict)
    _hosts: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _known: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _global: TokenBucket | None = None
    _accepts: TokenBucket | None = None
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    _told: tuple[float, int] = (float("-inf"), 0)

    @classmethod
    def for_config(cls, config: MeshConfig) -> HandshakeAdmission:
        """``[mesh]``'s limits: a quarter of the slots per host, a host's burst four
        times its rate, ten connections taken per handshake allowed."""
        return cls(
            max_handshakes=config.max_handshakes,
            per_host=max(1, config.max_handshakes // 4),
            rate=config.handshake_rate,
            host_rate=config.host_handshake_rate,
            host_burst=4 * config.host_handshake_rate,
            accept_rate=10 * config.handshake_rate,
        )

    @property
    def refused(self) -> int:
        return self.refused_busy + self.refused_rate + self.refused_host

    def refusals_to_tell(self, now: float, every: float = 10.0) -> int:
        """Connections refused since the last time this returned non-zero, at most
        once per ``every`` seconds (0 otherwise): one log line for a flood."""
        told_at, told = self._told
        if self.refused <= told or now - told_at < every:
            return 0
        self._told = (now, self.refused)
        return self.refused - told

    def accept_wait(self, now: float) -> float:
        """Seconds to wait before taking the next connection (0: take it now)."""
        if self._accepts is None:
            self._accepts = TokenBucket(self.accept_rate, self.accept_rate, now)
        wait = self._accepts.wait(now)
        if wait == 0.0:
            self._accepts.take(now)
        return wait

    def admit(self, host: str, now: float) -> tuple[Ticket | None, Ticket | None]:
        """``(ticket, evicted)``: a ticket if the handshake may start (``evicted``, if
        not None, is a handshake to end now to make room), or ``(None, None)``:
        refused, and counted."""
        in_flight = self._in_flight(host)
        if in_flight >= self.per_host:
            self.refused_busy += 1
            return None, None
        evicted = None
        if len(self._tickets) >= self.max_handshakes:
            evicted = self._victim(in_flight, now)
            if evicted is None:
                self.refused_busy += 1
                return None, None
        if not self._host_bucket(host, now).take(now):
            self.refused_host += 1
            return None, None
        if host not in self._known:
            if self._global is None:
                self._global = TokenBucket(self.rate, self.rate, now)
            if not self._global.take(now):
                self.refused_rate += 1
                return None, None
        if evicted is not None:
            self.release(evicted)
            self.evicted += 1
        ticket = Ticket(host, now, next(self._numbers))
        self._tickets[ticket.number] = ticket
        self.admitted += 1
        self.peak = max(self.peak, len(self._tickets))
        return ticket, evicted

    def release(self, ticket: Ticket, *, trusted: bool = False) -> None:
        """The handshake is over; ``trusted``: it proved a trusted peer."""
        self._tickets.pop(ticket.number, None)
        if trusted:
            self._known[ticket.host] = None
            self._known.move_to_end(ticket.host)
            while len(self._known) > KNOWN_HOSTS:
                self._known.popitem(last=False)

    @property
    def in_progress(self) -> int:
        return len(self._tickets)

    def _in_flight(self, host: str) -> int:
        return sum(1 for t in self._tickets.values() if t.host == host)

    def _victim(self, newcomer_holds: int, now: float) -> Ticket | None:
        """The oldest handshake, older than ``evict_after``, of the host holding the
        most slots — if that host holds more than the newcomer's."""
        counts: dict[str, int] = {}
        for t in self._tickets.values():
            counts[t.host] = counts.get(t.host, 0) + 1
        old = [t for t in self._tickets.values() if now - t.started >= self.evict_after]
        if not old:
            return None
        victim = max(old, key=lambda t: (counts[t.host], -t.started))
        return victim if counts[victim.host] > newcomer_holds else None

    def _host_bucket(self, host: str, now: float) -> TokenBucket:
        bucket = self._hosts.get(host)
        if bucket is None:
            bucket = self._hosts[host] = TokenBucket(self.host_rate, self.host_burst, now)
            while len(self._hosts) > HOST_BUCKETS:
                self._hosts.popitem(last=False)
        self._hosts.move_to_end(host)
        return bucket

    def status(self) -> dict[str, int]:
        return {
            "in_progress": len(self._tickets),
            "peak": self.peak,
            "admitted": self.admitted,
            "refused_busy": self.refused_busy,
            "refused_rate": self.refused_rate,
            "refused_host": self.refused_host,
            "evicted": self.evicted,
            "known_hosts": len(self._known),
        }


class Quiet:
    """Per key (a host), whether something is said for the first time in
    ``every`` seconds: the first failed handshake of a host is worth an INFO
    line, the next ones in the minute only DEBUG. Keeps the newest ``keep``."""

    def __init__(self, every: float = 60.0, keep: int = 256) -> None:
        self.every, self.keep = every, keep
        self._said: OrderedDict[str, float] = OrderedDict()

    def first(self, key: str, now: float) -> bool:
        if now - self._said.get(key, now - self.every) < self.every:
            return False
        self._said[key] = now
        self._said.move_to_end(key)
        while len(self._said) > self.keep:
            self._said.popitem(last=False)
        return True
