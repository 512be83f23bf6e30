"""The reconnection delays: jittered, within bounds, growing, reset after a success."""

from __future__ import annotations

import random
import statistics

import pytest

from lichen_mqtt import ReconnectSchedule


def schedules(n: int, first: float = 1.0, limit: float = 120.0) -> list[list[float]]:
    """``n`` schedules of 12 delays each, from different seeds."""
    out = []
    for seed in range(n):
        schedule = ReconnectSchedule(first, limit, rng=random.Random(seed))
        out.append([schedule.next() for _ in range(12)])
    return out


def test_every_delay_stays_within_bounds_and_its_ceiling() -> None:
    for delays in schedules(500):
        schedule = ReconnectSchedule(1.0, 120.0)
        for attempt, delay in enumerate(delays):
            assert 1.0 <= delay <= 120.0
            assert delay <= schedule.ceiling(attempt)


def test_the_ceiling_grows_to_the_limit() -> None:
    schedule = ReconnectSchedule(1.0, 120.0)
    ceilings = [schedule.ceiling(n) for n in range(8)]
    assert ceilings == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 120.0, 120.0]
    assert ReconnectSchedule(0.5, 2.0).ceiling(10_000) == 2.0  # no overflow


def test_delays_grow() -> None:
    runs = schedules(2000)
    means = [statistics.fmean(run[n] for run in runs) for n in range(12)]
    assert 1.4 < means[0] < 1.6  # uniform on [1, 2]
    assert all(a < b for a, b in zip(means[:7], means[1:7]))  # growing…
    assert 55 < means[-1] < 66  # …to uniform on [1, 120]
    assert max(run[-1] for run in runs) > 115  # and the cap is reached


def test_delays_are_jittered() -> None:
    """Nodes that lost the broker together do not come back together."""
    runs = schedules(200)
    for n in (0, 3, 11):
        values = [run[n] for run in runs]
        assert len(set(values)) == len(values)  # all different
        assert statistics.pstdev(values) > 0.2  # and spread out
    assert min(run[11] for run in runs) < 60  # even late attempts keep some low ones


def test_reset_starts_again_from_first() -> None:
    schedule = ReconnectSchedule(1.0, 120.0, rng=random.Random(1))
    for _ in range(10):
        schedule.next()
    assert schedule.attempts == 10
    schedule.reset()
    assert schedule.attempts == 0
    assert 1.0 <= schedule.next() <= 2.0


def test_a_schedule_with_equal_bounds_is_constant() -> None:
    schedule = ReconnectSchedule(5.0, 5.0)
    assert {schedule.next() for _ in range(20)} == {5.0}


@pytest.mark.parametrize(("first", "limit"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_bounds_are_refused(first: float, limit: float) -> None:
    with pytest.raises(ValueError):
        ReconnectSchedule(first, limit)


def test_the_uplink_takes_its_bounds_from_the_config() -> None:
    from agent.testing import FakeUplinkContext
    from lichen_mqtt import MqttConfig, MqttUplink

    config = MqttConfig(name="c", broker="mqtt://h", reconnect_min=0.5, reconnect_max=30.0)
    uplink = MqttUplink(config, FakeUplinkContext())
    assert (uplink.schedule.first, uplink.schedule.limit) == (0.5, 30.0)
