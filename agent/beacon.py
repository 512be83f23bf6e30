"""Time beacons: the cloud signs its wall time; a board without a real-time clock
corrects its clock by it, within stated bounds (``docs/time.md``).

A **beacon** is an entry of a cloud's own feed in collection ``_time``
(document id ``beacon``), body ``{"wall_ms": T}``: the cloud's wall clock in
milliseconds since the epoch when it signed it. It travels like any entry (the
MQTT ack topic, gossip, bundles, mules), so however late it arrives it says one
thing for sure: **the true time is at least T** — a lower bound. A board takes
it into account only when its author is a cloud it accepts.

:class:`ClockCorrector` is the decision, with no I/O and no clock of its own:
the caller passes the board's monotonic milliseconds (``time.monotonic()``,
which a wrong wall clock does not disturb) and the board's current clock. It
keeps the board's **anchor** — the time the latest correction established and
the monotonic instant it did — from which the board's wall clock is
``max(system clock, anchor.wall_ms + (monotonic now - anchor.mono_ms))``
(:meth:`Anchor.at`). A correction only ever replaces the anchor by one that is
later at every instant, so the clock never goes backwards.

The rules, in order (:data:`OUTCOMES`):

``rtc``            the board has a real-time clock: beacons are not used;
``stale``          received more than ``max_age_ms`` of monotonic time ago (or at an
                   unknown time: before the agent started);
``older``          not later than the latest beacon taken (a replay, or out of order);
``behind``         earlier than the board's clock by more than ``min_step_ms``: the
                   board never steps back; nothing changes;
``in_step``        within ``min_step_ms`` of the board's clock: nothing to correct;
``too_far_ahead``  ahead by more than ``max_forward_ms`` while the board is anchored
                   (a correction was taken since boot): refused; the first beacon of
                   a boot may move the clock forward by any amount;
``corrected``      the board's clock moves forward to ``T + age``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from .cloud_feed import BEACON_DOC_ID, TIME_COLLECTION

__all__ = [
    "OUTCOMES",
    "Anchor",
    "BeaconBody",
    "ClockBounds",
    "ClockCorrector",
    "Verdict",
    "beacon_body",
    "beacon_draft_fields",
    "parse_beacon_body",
]

#: what can become of a beacon (status keys)
OUTCOMES = ("corrected", "in_step", "behind", "older", "stale", "too_far_ahead", "rtc")
#: the largest wall time a beacon may carry (the hybrid clock's 48-bit milliseconds)
MAX_WALL_MS = (1 << 48) - 1


@dataclass(frozen=True, slots=True)
class BeaconBody:
    """A beacon's body: the cloud's wall clock when it signed."""

    wall_ms: int


def beacon_body(wall_ms: int) -> dict[str, Any]:
    """The body of a beacon signed at ``wall_ms``."""
    if not 0 < wall_ms <= MAX_WALL_MS:
        raise ValueError(f"beacon wall_ms {wall_ms} is out of range")
    return {"wall_ms": wall_ms}


def beacon_draft_fields(wall_ms: int) -> tuple[str, dict[str, Any], str]:
    """``(collection, body, doc_id)`` of a beacon, for the cloud's writer."""
    return TIME_COLLECTION, beacon_body(wall_ms), BEACON_DOC_ID


def parse_beacon_body(body: object) -> BeaconBody:
    """A beacon's body, or ValueError naming what is wrong."""
    if not isinstance(body, Mapping) or set(body) != {"wall_ms"}:
        raise ValueError('a beacon body is {"wall_ms": int}')
    wall = body["wall_ms"]
    if type(wall) is not int or not 0 < wall <= MAX_WALL_MS:
        raise ValueError(f"beacon wall_ms {wall!r} is not a time in milliseconds")
    return BeaconBody(wall)


@dataclass(frozen=True, slots=True)
class ClockBounds:
    """The bounds of a correction (``[clock]`` in ``lichen.toml``), in milliseconds."""

    max_forward_ms: int = 3_600_000
    max_age_ms: int = 60_000
    min_step_ms: int = 1_000

    def __post_init__(self) -> None:
        if min(self.max_forward_ms, self.max_age_ms, self.min_step_ms) < 0:
            raise ValueError("clock bounds are not negative")


@dataclass(frozen=True, slots=True)
class Anchor:
    """The board's clock was ``wall_ms`` at monotonic instant ``mono_ms``."""

    wall_ms: int
    mono_ms: int

    def at(self, mono_ms: int) -> int:
        """The anchored clock at monotonic instant ``mono_ms``."""
        return self.wall_ms + (mono_ms - self.mono_ms)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`ClockCorrector.decide` made of one beacon."""

    outcome: str
    #: the board's clock before, and after (equal unless ``corrected``)
    before_ms: int
    after_ms: int
    #: monotonic milliseconds since the beacon was received
    age_ms: int
    #: the beacon's time
    wall_ms: int
    #: whether this was the first correction since boot (no anchor before)
    first: bool = False
    #: the anchor to take (``corrected`` only)
    anchor: Anchor | None = None

    @property
    def step_ms(self) -> int:
        return self.after_ms - self.before_ms

    @property
    def detail(self) -> str:
        """One line for people: why."""
        gap = self.wall_ms + self.age_ms - self.before_ms
        return {
            "corrected": f"clock moved forward by {self.step_ms} ms",
            "in_step": f"within the minimum step ({gap:+d} ms)",
            "behind": f"the beacon is {-gap} ms behind this board's clock; "
            "the clock never steps back",
            "older": "not later than the latest beacon taken",
            "stale": f"received {self.age_ms} ms ago, beyond the age limit",
            "too_far_ahead": f"{gap} ms ahead of this board's clock, beyond the forward limit",
            "rtc": "this board has a real-time clock; beacons are not used",
        }[self.outcome]


@dataclass(eq=False)
class ClockCorrector:
    """The board's side of time beacons: decides, and remembers what it took.

    >>> corrector = ClockCorrector(ClockBounds())
    >>> verdict = corrector.decide(1_800_000_000_000, received_mono_ms=5_000,
    ...                            now_mono_ms=5_200, board_now_ms=1_000)
    >>> verdict.outcome, verdict.after_ms
    ('corrected', 1800000000200)
    >>> corrector.take(verdict); corrector.wall(system_ms=1_000, mono_ms=6_200)
    1800000001200
    """

    bounds: ClockBounds
    _: KW_ONLY
    rtc: bool = False
    #: the latest correction's anchor (None: none since boot)
    anchor: Anchor | None = None
    #: the latest beacon time taken (corrected, in step or behind)
    latest_ms: int | None = None

    def wall(self, system_ms: int, mono_ms: int) -> int:
        """The board's wall clock: the system's, or the anchored one if later."""
        anchor = self.anchor
        return system_ms if anchor is None else max(system_ms, anchor.at(mono_ms))

    def decide(
        self, wall_ms: int, *, received_mono_ms: int | None, now_mono_ms: int, board_now_ms: int
    ) -> Verdict:
        """What to do with a beacon of time ``wall_ms`` received at monotonic
        ``received_mono_ms`` (None: before this process started), now that the
        monotonic clock reads ``now_mono_ms`` and the board's clock ``board_now_ms``
        (its hybrid clock's physical part, which never runs backwards).
        Changes nothing: :meth:`take` does."""
        bounds = self.bounds
        age = bounds.max_age_ms + 1 if received_mono_ms is None else now_mono_ms - received_mono_ms

        def verdict(outcome: str, after: int = board_now_ms, **more: Any) -> Verdict:
            return Verdict(outcome, board_now_ms, after, age, wall_ms, **more)

        if self.rtc:
            return verdict("rtc")
        if not 0 <= age <= bounds.max_age_ms:
            return verdict("stale")
        if self.latest_ms is not None and wall_ms <= self.latest_ms:
            return verdict("older")
        estimate = wall_ms + age  # the true time is at least this
        gap = estimate - board_now_ms
        if gap < -bounds.min_step_ms:
            return verdict("behind")
        if gap < max(bounds.min_step_ms, 1):  # a correction moves the clock forward
            return verdict("in_step")
        if self.anchor is not None and gap > bounds.max_forward_ms:
            return verdict("too_far_ahead")
        return verdict(
            "corrected",
            estimate,
            first=self.anchor is None,
            anchor=Anchor(estimate, now_mono_ms),
        )

    def take(self, verdict: Verdict) -> None:
        """Remember ``verdict``: a correction becomes the anchor; a beacon in step
        or behind is the latest taken (later ones must be newer)."""
        if verdict.outcome in ("corrected", "in_step", "behind"):
            self.latest_ms = max(self.latest_ms or 0, verdict.wall_ms)
        if verdict.outcome == "corrected" and verdict.anchor is not None:
            self.anchor = verdict.anchor
