"""The delays between attempts to reach the broker: the project's one backoff."""

from __future__ import annotations

import random

from agent.plugin_api import Backoff

__all__ = ["ReconnectSchedule"]


class ReconnectSchedule(Backoff):
    """:class:`agent.backoff.Backoff` as the uplink uses it: full jitter with a
    floor. Attempt ``n`` (from 0 since the last :meth:`reset`) waits a time drawn
    uniformly from ``[first, min(limit, first × 2**(n+1))]``: with the defaults
    1–2 s, 1–4 s … 1–64 s, then 1–120 s for every later attempt, so a fleet that
    lost its broker together spreads its reconnections over the whole interval.
    Call :meth:`reset` once a connection has held.

    >>> schedule = ReconnectSchedule(1.0, 120.0, rng=random.Random(7))
    >>> delays = [schedule.next() for _ in range(8)]
    >>> all(1.0 <= d <= schedule.ceiling(n) for n, d in enumerate(delays))
    True
    >>> schedule.reset(); schedule.next() <= 2.0
    True
    """

    def __init__(
        self, first: float = 1.0, limit: float = 120.0, *, rng: random.Random | None = None
    ) -> None:
        super().__init__(first, limit, full_jitter=True, rng=rng)
