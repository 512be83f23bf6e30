"""The gossip scheduler's decisions: whom to dial, when, and within which budgets."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agent.link_api import NEW_CONTACT_S
from agent.mesh.planner import BACKOFF_MAX_S, GossipPlanner, TransportBudget

A, B, C = "tcp://10.0.0.1:7400", "tcp://10.0.0.2:7400", "ble://aa:bb"


def planner(**kw: object) -> GossipPlanner:
    return GossipPlanner(rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_static_peers_are_due_at_once_then_every_interval() -> None:
    p = planner(sync_interval=60)
    p.add_static(A)
    assert p.due(0.0, active=[]) == [A]
    p.outcome(A, 0.0, ok=True, node="n1")
    assert p.due(30.0, active=[]) == []
    assert p.due(60.0, active=[]) == [A]


def test_failures_back_off_with_jitter_up_to_a_cap() -> None:
    p = planner()
    p.add_static(A)
    times = [p.outcome(A, 0.0, ok=False) for _ in range(20)]
    assert 0.5 <= times[0] <= 1.5 and times[3] > times[0]
    assert max(times) <= BACKOFF_MAX_S * 1.5
    for n, wait in enumerate(times):  # d × [0.5, 1.5], d doubling from 1 s up to the cap
        base = min(2.0**n, BACKOFF_MAX_S)
        assert 0.5 * base <= wait <= 1.5 * base
    p.outcome(A, 100.0, ok=True)
    assert 0.5 <= p.outcome(A, 200.0, ok=False) - 200.0 <= 1.5  # from 1 s again


def test_a_changed_digest_makes_a_peer_due_and_an_unchanged_one_does_not() -> None:
    p = planner(sync_interval=600)
    p.sighting(A, "n1", "d1", now=0.0)
    assert p.due(0.0, active=[]) == [A]
    p.outcome(A, 0.0, ok=True, digest="d1")
    p.sighting(A, "n1", "d1", now=10.0)
    assert p.due(10.0, active=[]) == []  # nothing new there
    p.sighting(A, "n1", "d2", now=20.0)
    assert p.due(20.0, active=[]) == [A]


def test_own_advertisement_is_ignored_and_live_sessions_are_not_redialled() -> None:
    p = planner(own_node="me")
    p.sighting(A, "me", "x", 0.0)
    assert p.targets == {}
    p.sighting(B, "n2", "x", 0.0)
    assert p.due(0.0, active=["n2"]) == []  # a session with that node is open


def test_session_caps_and_transport_budgets() -> None:
    p = planner(
        max_sessions=2, budgets={"ble": TransportBudget(max_sessions=1, max_bytes_per_hour=1000)}
    )
    for address in (A, B, C, "ble://cc:dd"):
        p.add_static(address)
    assert len(p.due(0.0, active=[])) == 2
    assert p.due(0.0, active=[A, B]) == []
    chosen = p.due(0.0, active=[A])
    assert len(chosen) == 1
    p.outcome(C, 0.0, ok=True, wire_bytes=5000)  # the ble budget for this hour is spent
    p.targets["ble://cc:dd"].next_attempt = 0.0
    assert all(not a.startswith("ble") for a in p.due(1.0, active=[]))
    assert any(a.startswith("ble") for a in p.due(3700.0, active=[]))


def test_a_heavily_penalised_peer_is_left_alone() -> None:
    p = planner()
    p.sighting(A, "bad", "x", 0.0)
    assert p.due(0.0, active=[], penalty={"bad": 9.0}) == []
    assert p.targets[A].next_attempt == BACKOFF_MAX_S


@given(
    st.lists(st.tuples(st.sampled_from([A, B, C]), st.booleans()), max_size=60), st.integers(1, 4)
)
def test_never_more_sessions_than_allowed(events: list[tuple[str, bool]], cap: int) -> None:
    p = planner(max_sessions=cap)
    for address in (A, B, C):
        p.add_static(address)
    now = 0.0
    active: set[str] = set()
    for address, ok in events:
        now += 7.0
        dialled = p.due(now, active=active)
        assert len(active) + len(dialled) <= cap and not set(dialled) & active
        active |= set(dialled)
        if address in active:
            active.discard(address)
            p.outcome(address, now, ok=ok)


def test_a_transport_that_dials_on_sightings_is_not_dialled_again_on_a_timer() -> None:
    """BLE: after a good session the peer is left alone until its advertisement
    says there is something to exchange again (the transport reports only then)."""
    p = planner(sync_interval=60, on_sighting=frozenset({"ble"}))
    p.sighting(C, "n3", "d1", now=0.0)
    assert p.due(0.0, active=[]) == [C]
    p.outcome(C, 1.0, ok=True, node="n3", digest="d1")
    assert p.due(3600.0, active=[]) == []
    p.sighting(C, "n3", "d1", now=4000.0)  # the same digest, but our heads changed
    assert p.due(4000.0, active=[]) == [C]
    p.sighting(A, "n1", "e1", now=0.0)  # TCP keeps its interval
    p.outcome(A, 1.0, ok=True, node="n1", digest="e1")
    assert p.due(61.0, active=[]) == [A]


def test_a_node_dialled_on_sightings_back_after_a_silence_is_due_despite_failures() -> None:
    """BLE: failed dials back off while the node stays heard (sightings less than
    NEW_CONTACT_S apart); heard again after a silence, it is a new contact and
    due at once. TCP keeps its backoff either way."""
    p = planner(on_sighting=frozenset({"ble"}))
    p.sighting(C, "n3", "d1", now=0.0)
    for attempt in range(1, 6):
        p.outcome(C, attempt / 10, ok=False)
    backoff_ends = p.targets[C].next_attempt  # 16 s × [0.5, 1.5] after the fifth
    p.sighting(C, "n3", "d2", now=1.0)  # heard all along: news, but it keeps failing
    assert p.due(1.0, active=[]) == []
    later = 1.0 + NEW_CONTACT_S  # unheard for NEW_CONTACT_S, then heard
    assert later < backoff_ends
    p.sighting(C, "n3", "d2", now=later)
    assert p.due(later, active=[]) == [C]
    p.sighting(A, "n1", "e1", now=0.0)
    p.outcome(A, 1.0, ok=False)
    p.sighting(A, "n1", "e2", now=100.0)
    assert p.targets[A].next_attempt > 1.0 and p.targets[A].failures == 1
