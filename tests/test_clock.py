"""Hybrid logical clock: monotonic whatever the wall clock does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.clock import HybridClock, format_ts, pack, physical_ms, unpack

DAY = 86_400_000
YEAR = 365 * DAY
NOW = 1_795_000_000_000


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_follows_the_wall_clock_forward() -> None:
    wall = Wall(NOW)
    clock = HybridClock(wall)
    a = clock.now()
    wall.ms += 1000
    b = clock.now()
    assert unpack(a) == (NOW, 0) and unpack(b) == (NOW + 1000, 0)


def test_jump_back_one_day_then_forward_one_year() -> None:
    wall = Wall(NOW)
    clock = HybridClock(wall)
    stamps = [clock.now() for _ in range(3)]
    wall.ms -= DAY  # NTP corrects a clock that was a day fast
    stamps += [clock.now() for _ in range(3)]
    assert all(physical_ms(s) == NOW for s in stamps[3:])  # held at the high-water mark
    wall.ms += YEAR  # then the clock jumps a year forward
    stamps += [clock.now() for _ in range(3)]
    assert stamps == sorted(set(stamps))
    assert physical_ms(stamps[-1]) == NOW - DAY + YEAR


def test_logical_counter_overflow_advances_physical_time() -> None:
    clock = HybridClock(Wall(NOW))
    last = 0
    for _ in range(70_000):
        ts = clock.now()
        assert ts > last
        last = ts
    assert physical_ms(last) == NOW + 1


def test_restart_resumes_above_the_persisted_high_water_mark() -> None:
    first = HybridClock(Wall(NOW))
    mark = max(first.now() for _ in range(5))
    again = HybridClock(Wall(0), high_water=mark)  # a Pi booting in 1970
    assert again.now() > mark


def test_observe_raises_the_floor_and_merge_is_bounded() -> None:
    clock = HybridClock(Wall(NOW))
    clock.observe(pack(NOW + 5, 3))
    assert clock.now() > pack(NOW + 5, 3)
    assert not clock.merge(pack(NOW + 2 * DAY, 0), max_ahead_ms=DAY)
    assert clock.now() < pack(NOW + DAY, 0)
    assert clock.merge(pack(NOW + 60_000, 0), max_ahead_ms=DAY)
    assert clock.now() > pack(NOW + 60_000, 0)


def test_physical_now_never_runs_backwards() -> None:
    wall = Wall(NOW)
    clock = HybridClock(wall)
    clock.now()
    wall.ms -= DAY
    assert clock.physical_now() == NOW


@given(st.lists(st.integers(min_value=0, max_value=2**47), min_size=1, max_size=200))
def test_strictly_increasing_for_any_wall_clock_sequence(walls: list[int]) -> None:
    wall = Wall(walls[0])
    clock = HybridClock(wall)
    last = -1
    for w in walls:
        wall.ms = w
        ts = clock.now()
        assert ts > last
        assert physical_ms(ts) >= w
        last = ts


def test_format() -> None:
    assert format_ts(pack(0, 0)) == "1970-01-01T00:00:00.000Z"
    assert format_ts(pack(1_000_123, 7)) == "1970-01-01T00:16:40.123Z+7"
