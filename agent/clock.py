"""Hybrid logical clock (Kulkarni et al., 2014) packed into one 64-bit integer.

A timestamp is ``(physical_ms << 16) | logical``: milliseconds since the Unix
epoch in the top 48 bits, a counter in the low 16. Comparing two timestamps as
integers orders them.

Why: a Raspberry Pi has no real-time clock. It boots in 1970 (or at the last
saved time) and jumps when NTP arrives — backwards or forwards. The clock never
goes backwards regardless:

* the wall clock moving **forward** is followed at once;
* the wall clock moving **backward** is ignored — the physical part stays at its
  high-water mark and the logical counter advances (after 65 536 events in one
  millisecond, the physical part is advanced by 1 ms instead);
* across **restarts**, the high-water mark is the timestamp of the node's own
  latest entry, which the store commits in the same transaction as the entry
  (see :meth:`HybridClock.observe`), so a crash cannot make it regress.

The clock is thread-safe: sensor threads read it while the writer thread stamps
entries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = [
    "LOGICAL_BITS",
    "HybridClock",
    "format_ts",
    "pack",
    "physical_ms",
    "unpack",
    "wall_ms",
]

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
_MAX_PHYSICAL = (1 << 48) - 1


def wall_ms() -> int:
    """The system's wall clock in whole milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def pack(physical: int, logical: int = 0) -> int:
    if not 0 <= physical <= _MAX_PHYSICAL or not 0 <= logical <= _LOGICAL_MASK:
        raise ValueError(f"HLC parts out of range: physical={physical} logical={logical}")
    return (physical << LOGICAL_BITS) | logical


def unpack(ts: int) -> tuple[int, int]:
    return ts >> LOGICAL_BITS, ts & _LOGICAL_MASK


def physical_ms(ts: int) -> int:
    return ts >> LOGICAL_BITS


def format_ts(ts: int) -> str:
    """``2026-11-23T10:00:00.123Z`` (with ``+N`` when the logical part is non-zero)."""
    physical, logical = unpack(ts)
    when = datetime.fromtimestamp(physical / 1000, tz=UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{physical % 1000:03d}Z"
    return f"{text}+{logical}" if logical else text


class HybridClock:
    """Monotonic timestamps from an unreliable wall clock.

    ``wall`` returns milliseconds since the epoch; tests inject a fake one::

        >>> now = [1_000]
        >>> clock = HybridClock(wall=lambda: now[0])
        >>> a = clock.now(); now[0] = 500; b = clock.now()   # wall jumps back
        >>> b > a
        True
    """

    __slots__ = ("_last", "_lock", "_wall")

    def __init__(self, wall: Callable[[], int] = wall_ms, high_water: int = 0) -> None:
        self._wall = wall
        self._last = high_water
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        """The highest timestamp issued or observed."""
        return self._last

    def now(self) -> int:
        """A timestamp greater than every one issued or observed before."""
        with self._lock:
            wall = self._wall()
            last = self._last
            if wall > last >> LOGICAL_BITS:
                last = min(wall, _MAX_PHYSICAL) << LOGICAL_BITS
            elif last & _LOGICAL_MASK != _LOGICAL_MASK:
                last += 1
            else:  # 65 536 events in one millisecond (or a wall clock stuck in the past)
                last = ((last >> LOGICAL_BITS) + 1) << LOGICAL_BITS
            self._last = last
            return last

    def observe(self, ts: int) -> None:
        """Raise the floor: every later :meth:`now` is greater than ``ts``.

        Used at start-up with the node's own latest entry, and inside the write
        transaction with the feed head, so even two processes appending to one
        feed issue increasing timestamps.
        """
        with self._lock:
            self._last = max(self._last, ts)

    def merge(self, remote_ts: int, max_ahead_ms: int) -> bool:
        """HLC receive rule, bounded: adopt ``remote_ts`` unless it is more than
        ``max_ahead_ms`` ahead of our wall clock (a peer with a wild clock must not
        drag us into the future). Returns whether it was adopted."""
        with self._lock:
            if physical_ms(remote_ts) > self._wall() + max_ahead_ms:
                return False
            self._last = max(self._last, remote_ts)
            return True

    def physical_now(self) -> int:
        """Milliseconds for stamping samples: the wall clock, but never below the
        high-water mark (so sample times never run backwards either). Lock-free:
        it only reads the high-water mark, which only grows."""
        wall = self._wall()
        floor = self._last >> LOGICAL_BITS
        return wall if floor < wall <= _MAX_PHYSICAL else max(floor, min(wall, _MAX_PHYSICAL))
