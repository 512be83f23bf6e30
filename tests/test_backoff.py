"""The one backoff (agent.backoff.Backoff): its three schedules, reset, bounds and
the names plugins import it by."""

from __future__ import annotations

import doctest
import random
from typing import Any

import pytest

import agent.backoff
from agent.backoff import Backoff


def test_the_examples_in_the_docstrings_hold() -> None:
    failed, tried = doctest.testmod(agent.backoff)
    assert tried and not failed


def test_without_jitter_the_delays_double_up_to_the_limit() -> None:
    backoff = Backoff(1.0, 60.0, jitter=0.0)
    assert [backoff.next() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.attempts == 8


def test_jittered_delays_stay_in_their_band_and_differ() -> None:
    delays = []
    for seed in range(200):
        backoff = Backoff(1.0, 60.0, rng=random.Random(seed))
        run = [backoff.next() for _ in range(10)]
        for n, delay in enumerate(run):
            ceiling = min(60.0, 2.0**n)
            assert ceiling / 2 <= delay <= ceiling
        delays.append(run[3])
    assert len(set(delays)) == len(delays)  # nodes that failed together do not retry together


def test_full_jitter_draws_from_first_up_to_the_growing_ceiling() -> None:
    backoff = Backoff(1.0, 120.0, full_jitter=True, rng=random.Random(3))
    assert [backoff.ceiling(n) for n in range(8)] == [2, 4, 8, 16, 32, 64, 120, 120]
    for n in range(30):
        assert 1.0 <= backoff.next() <= backoff.ceiling(n)


def test_reset_starts_again_from_first() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    for _ in range(6):
        backoff.next()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next() == 0.5


def test_a_long_outage_never_overflows() -> None:
    backoff = Backoff(1.0, 60.0, factor=10.0, jitter=0.0)
    assert backoff.ceiling(10_000) == 60.0
    for _ in range(2000):
        assert backoff.next() <= 60.0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"first": 0.0}, "first"),
        ({"first": 2.0, "limit": 1.0}, "limit"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_bad_parameters_are_refused_by_name(args: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Backoff(**args)


def test_plugins_import_the_same_class() -> None:
    from agent import link_api, plugin_api

    assert plugin_api.Backoff is link_api.Backoff is Backoff
