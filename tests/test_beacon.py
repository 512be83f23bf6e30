"""Time beacons: the decision core (agent.beacon), and the never-backwards property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.beacon import (
    Anchor,
    ClockBounds,
    ClockCorrector,
    Verdict,
    beacon_body,
    parse_beacon_body,
)
from agent.clock import HybridClock, physical_ms

NOW = 1_795_000_000_000  # 2026-11-18
PAST = 1_000_000  # a board booted in 1970
BOUNDS = ClockBounds(max_forward_ms=3_600_000, max_age_ms=60_000, min_step_ms=1_000)


def decide(c: ClockCorrector, wall: int, received: int | None, now: int, board: int) -> Verdict:
    return c.decide(wall, received_mono_ms=received, now_mono_ms=now, board_now_ms=board)


def test_first_beacon_moves_a_board_in_1970_forward_by_its_age() -> None:
    c = ClockCorrector(BOUNDS)
    v = decide(c, NOW, 10_000, 10_250, PAST)
    assert v.outcome == "corrected" and v.first
    assert (v.before_ms, v.after_ms, v.age_ms) == (PAST, NOW + 250, 250)
    c.take(v)
    # the board's wall is now the anchored one, advancing with monotonic time
    assert c.wall(system_ms=PAST + 5, mono_ms=11_250) == NOW + 1_250
    # a system clock later than the anchor (NTP arrived) is followed
    assert c.wall(system_ms=NOW + 9_999_999, mono_ms=11_250) == NOW + 9_999_999


def test_a_beacon_behind_the_board_changes_nothing() -> None:
    c = ClockCorrector(BOUNDS, anchor=Anchor(NOW, 0), latest_ms=NOW)
    v = decide(c, NOW + 10, 100, 100, NOW + 60_000)
    assert v.outcome == "behind" and v.after_ms == v.before_ms
    c.take(v)
    assert c.anchor == Anchor(NOW, 0) and c.latest_ms == NOW + 10
    assert "never steps back" in v.detail


def test_in_step_below_the_minimum_step() -> None:
    c = ClockCorrector(BOUNDS, anchor=Anchor(NOW, 0))
    v = decide(c, NOW + 900, 0, 0, NOW)
    assert v.outcome == "in_step"


def test_stale_older_and_unknown_receipt_are_refused() -> None:
    c = ClockCorrector(BOUNDS, latest_ms=NOW)
    assert decide(c, NOW + 5_000, 0, 60_001, PAST).outcome == "stale"
    assert decide(c, NOW + 5_000, None, 0, PAST).outcome == "stale"
    assert decide(c, NOW + 5_000, 10, 0, PAST).outcome == "stale"  # received in the future
    assert decide(c, NOW, 0, 0, PAST).outcome == "older"  # a replay
    assert decide(c, NOW - 1, 0, 0, PAST).outcome == "older"
    assert decide(c, NOW + 1, 0, 60_000, PAST).outcome == "corrected"  # the limit is inclusive


def test_forward_limit_once_anchored() -> None:
    c = ClockCorrector(BOUNDS, anchor=Anchor(NOW, 0), latest_ms=NOW)
    v = decide(c, NOW + 3_600_001, 0, 0, NOW)
    assert v.outcome == "too_far_ahead" and v.after_ms == NOW
    c.take(v)
    assert c.anchor == Anchor(NOW, 0) and c.latest_ms == NOW  # nothing taken
    assert decide(c, NOW + 3_600_000, 0, 0, NOW).outcome == "corrected"


def test_a_board_with_a_real_time_clock_uses_no_beacon() -> None:
    assert decide(ClockCorrector(BOUNDS, rtc=True), NOW, 0, 0, PAST).outcome == "rtc"


def test_body_round_trip_and_refusals() -> None:
    assert parse_beacon_body(beacon_body(NOW)).wall_ms == NOW
    for bad in ({}, {"wall_ms": "1"}, {"wall_ms": 1.5}, {"wall_ms": 0}, {"wall_ms": 1 << 48},
                {"wall_ms": NOW, "x": 1}, [NOW], None, {"wall_ms": True}):  # fmt: skip
        with pytest.raises(ValueError):
            parse_beacon_body(bad)


# ---------------------------------------------------------------- the property

events = st.lists(
    st.one_of(
        # a beacon: its time relative to the true time, age at processing, receipt known
        st.tuples(
            st.just("beacon"),
            st.integers(-10 * 86_400_000, 10 * 86_400_000),
            st.integers(0, 120_000),
            st.booleans(),
        ),
        # monotonic time passes
        st.tuples(st.just("tick"), st.integers(0, 86_400_000), st.just(0), st.just(True)),
        # the system clock jumps (NTP, a reboot of the RTC-less clock, a test offset)
        st.tuples(st.just("jump"), st.integers(-(10**12), 10**12), st.just(0), st.just(True)),
        # the board stamps an entry
        st.tuples(st.just("stamp"), st.just(0), st.just(0), st.just(True)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    events=events,
    system_start=st.integers(1, 2 * NOW),
    max_forward=st.integers(0, 86_400_000),
    min_step=st.integers(0, 10_000),
)
def test_never_backwards(
    events: list[tuple[str, int, int, bool]], system_start: int, max_forward: int, min_step: int
) -> None:
    """Whatever beacons arrive, however old, early, late or repeated, and whatever
    the system clock does: the board's timestamps only increase, the anchored
    clock never reads less than before at any instant, no correction moves it
    by more than ``max_forward`` once anchored, and a refused beacon changes nothing."""
    bounds = ClockBounds(max_forward_ms=max_forward, max_age_ms=60_000, min_step_ms=min_step)
    c = ClockCorrector(bounds)
    mono = 1_000
    system = [system_start]
    true_ms = NOW
    clock = HybridClock(lambda: c.wall(system[0], mono))
    stamps = [clock.now()]
    for kind, value, age, known in events:
        if kind == "tick":
            mono += value
            true_ms += value
            system[0] += value
        elif kind == "jump":
            system[0] = max(1, min((1 << 48) - 1, system[0] + value))
        elif kind == "stamp":
            stamps.append(clock.now())
        else:
            wall = max(1, true_ms + value)
            before_anchor, before_latest = c.anchor, c.latest_ms
            board = physical_ms(clock.now())
            v = c.decide(
                wall,
                received_mono_ms=mono - age if known else None,
                now_mono_ms=mono,
                board_now_ms=board,
            )
            c.take(v)
            if v.outcome == "corrected":
                assert v.after_ms > v.before_ms == board
                assert v.after_ms == wall + age
                if before_anchor is not None:
                    assert v.step_ms <= max_forward
                    # later than the old anchor at every instant (same rate)
                    assert c.anchor is not None
                    assert c.anchor.at(mono) > before_anchor.at(mono)
                assert physical_ms(clock.now()) >= v.after_ms  # the clock took it
            else:
                assert v.after_ms == v.before_ms
                assert c.anchor == before_anchor
                if v.outcome not in ("in_step", "behind"):
                    assert c.latest_ms == before_latest
        stamps.append(clock.now())
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
