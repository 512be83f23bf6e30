"""The delays between attempts to reach the broker: exponential, jittered, capped."""

from __future__ import annotations

import random

__all__ = ["ReconnectSchedule"]


class ReconnectSchedule:
    """Exponential backoff with full jitter ("Exponential Backoff and Jitter",
    AWS Architecture Blog), with a floor.

    Attempt ``n`` (from 0 since the last :meth:`reset`) waits a time drawn
    uniformly from ``[first, ceiling(n)]``, ``ceiling(n) = min(limit, first ×
    2**(n+1))``: with the defaults 1–2 s, 1–4 s, 1–8 s … 1–64 s, then 1–120 s
    (60 s on average) for every later attempt. Every delay stays within
    ``[first, limit]``. A fleet that lost its broker at the same moment (a
    broker restart, a mobile network coming back) spreads its reconnections
    over the whole interval instead of arriving in waves, which plain doubling
    — or paho's own fixed reconnect delays — would do.

    Call :meth:`reset` once a connection has held, so the next loss starts
    again from ``first``. No clock, no I/O: the caller sleeps. ``rng`` makes
    the schedule reproducible in tests.

    >>> schedule = ReconnectSchedule(1.0, 120.0, rng=random.Random(7))
    >>> delays = [schedule.next() for _ in range(8)]
    >>> all(1.0 <= d <= schedule.ceiling(n) for n, d in enumerate(delays))
    True
    >>> schedule.reset(); schedule.next() <= 2.0
    True
    """

    factor = 2.0

    def __init__(
        self, first: float = 1.0, limit: float = 120.0, *, rng: random.Random | None = None
    ) -> None:
        if not first > 0:
            raise ValueError(f"first must be a positive number of seconds, not {first}")
        if limit < first:
            raise ValueError(f"limit ({limit}) must be at least first ({first})")
        self.first = first
        self.limit = limit
        self._rng = rng or random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempts

    def ceiling(self, attempt: int) -> float:
        """The longest delay attempt ``attempt`` (from 0) may wait."""
        exponent = min(attempt + 1, 1000)  # 2**1000 s is long past any limit
        return min(self.limit, self.first * self.factor**exponent)

    def next(self) -> float:
        """The delay before the next attempt, in seconds."""
        delay = self._rng.uniform(self.first, self.ceiling(self._attempts))
        self._attempts += 1
        return min(self.limit, max(self.first, delay))

    def reset(self) -> None:
        """The broker answered and the link held: start again from ``first``."""
        self._attempts = 0

    def __repr__(self) -> str:
        return (
            f"ReconnectSchedule(first={self.first}, limit={self.limit}, attempts={self._attempts})"
        )
