"""The project's one backoff: exponential delays between attempts, with jitter.

Every retry in Lichen waits the delays of :class:`Backoff` — a transport
dialling a peer or failing to start, the MQTT uplink and the cloud reaching
their broker, a sensor instance restarted after a failure, a serial device
reopened, the gossip planner redialling a peer that failed. Each keeps its own
numbers (first delay, limit, jitter); the schedule is written once, here.
Plugins import it from :mod:`agent.plugin_api` (or :mod:`agent.link_api`).

Pure: no clock, no I/O.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """The delays before successive attempts (to reach a peer, to restart an instance).

    Attempt ``n`` (counting from 0 since the last :meth:`reset`) waits a
    random time in ``[(1 - jitter) × d, d]`` with ``d = min(limit, first ×
    factor**n)``. The defaults give 0.5–1 s, 1–2 s, 2–4 s, 4–8 s … and then
    30–60 s for every later attempt; the jitter keeps nodes that lost a peer
    at the same moment (a reboot, a radio coming back) from all calling at
    once; ``jitter=0`` gives the plain doubling 1 s, 2 s, 4 s … Call
    :meth:`reset` once an attempt succeeded, so the next failure starts again
    from ``first``.

    With ``full_jitter``, attempt ``n`` waits a time drawn uniformly from
    ``[first, min(limit, first × factor**(n+1))]`` instead ("Exponential
    Backoff and Jitter", AWS Architecture Blog: full jitter, with ``first`` as
    a floor): 1–2 s, 1–4 s … then 1–120 s (60 s on average). A whole fleet that
    lost its broker at once spreads its reconnections over the interval instead
    of arriving in waves.

    The object holds no clock and does no I/O: the caller sleeps. ``rng``
    makes the schedule reproducible in tests.

    ::

        backoff = Backoff()
        while True:
            try:
                stream = await transport.connect(address)
            except TransportError:
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            await sync_over(stream)

    >>> b = Backoff(first=1.0, limit=8.0, jitter=0.0)
    >>> [b.next() for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> b.reset(); b.next()
    1.0
    >>> full = Backoff(first=1.0, limit=120.0, full_jitter=True, rng=random.Random(7))
    >>> all(1.0 <= full.next() <= full.ceiling(n) for n in range(12))
    True
    """

    def __init__(
        self,
        first: float = 1.0,
        limit: float = 60.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        full_jitter: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if not first > 0:
            raise ValueError(f"first must be a positive number of seconds, not {first}")
        if limit < first:
            raise ValueError(f"limit ({limit}) must be at least first ({first})")
        if factor < 1:
            raise ValueError(f"factor must be at least 1, not {factor}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {jitter}")
        self.first = first
        self.limit = limit
        self.factor = factor
        self.jitter = jitter
        self.full_jitter = full_jitter
        self._rng = rng or random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempts

    def ceiling(self, attempt: int) -> float:
        """The longest delay attempt ``attempt`` may wait (before jitter)."""
        # cap the exponent: factor**attempt overflows long before it matters
        exponent = min(attempt + self.full_jitter, 1024)
        try:
            delay = self.first * self.factor**exponent
        except OverflowError:
            return self.limit
        return min(self.limit, delay)

    def next(self) -> float:
        """The delay before the next attempt, in seconds."""
        ceiling = self.ceiling(self._attempts)
        self._attempts += 1
        if self.full_jitter:
            return min(ceiling, max(self.first, self._rng.uniform(self.first, ceiling)))
        if self.jitter == 0:
            return ceiling
        return ceiling * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """The attempt worked: the next delay is ``first`` again."""
        self._attempts = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(first={self.first}, limit={self.limit}, factor={self.factor}, "
            f"jitter={'full' if self.full_jitter else self.jitter}, attempts={self._attempts})"
        )
