"""Handshake admission, the decision alone (the clock is passed in)."""

from __future__ import annotations

from agent.config import MeshConfig
from agent.mesh.admission import HandshakeAdmission, Quiet, TokenBucket


def test_the_cap_holds_and_a_slow_caller_is_evicted_for_a_host_with_fewer_slots() -> None:
    gate = HandshakeAdmission(max_handshakes=4, per_host=2, rate=100, host_rate=100,
                              host_burst=100, accept_rate=1000, evict_after=1.0)  # fmt: skip
    tickets = [gate.admit(host, 0.0)[0] for host in ("a", "a", "b", "b")]
    assert all(tickets) and gate.in_progress == 4 == gate.peak
    assert gate.admit("a", 0.1) == (None, None)  # its host holds its share
    assert gate.admit("c", 0.5) == (None, None)  # full, and nobody has run a second yet
    assert gate.refused_busy == 2
    ticket, evicted = gate.admit("c", 1.5)  # a host with no slot evicts the busiest's oldest
    assert ticket is not None and evicted is tickets[0] and gate.evicted == 1
    assert gate.in_progress == 4 and gate.peak == 4
    assert gate.admit("d", 1.6)[0] is not None  # "b" still holds two: evicted again
    # every host holds one now: one more from any of them evicts nobody ...
    assert gate.admit("a", 1.7) == (None, None) and gate.evicted == 2
    # ... but a host holding none takes the oldest slot (a turn for everyone)
    assert gate.admit("e", 1.8)[0] is not None and gate.evicted == 3


def test_rates_per_host_and_for_hosts_not_known() -> None:
    gate = HandshakeAdmission(max_handshakes=100, per_host=100, rate=3, host_rate=1,
                              host_burst=2, accept_rate=1000)  # fmt: skip
    for host in ("a", "a"):
        ticket, _ = gate.admit(host, 0.0)
        assert ticket is not None
        gate.release(ticket)
    assert gate.admit("a", 0.0) == (None, None) and gate.refused_host == 1  # burst spent
    ticket, _ = gate.admit("b", 0.0)  # the third of the global burst of three
    assert ticket is not None
    gate.release(ticket, trusted=True)  # a trusted peer finished its handshake at "b"
    assert gate.admit("c", 0.0) == (None, None) and gate.refused_rate == 1
    ticket, _ = gate.admit("b", 0.0)  # known: the global rate does not apply
    assert ticket is not None
    gate.release(ticket)
    assert gate.admit("a", 1.0)[0] is not None  # a second later: a token each again
    assert gate.status()["known_hosts"] == 1
    assert gate.status()["admitted"] == gate.admitted == 5


def test_accepts_are_paced_and_refusals_told_once_per_interval() -> None:
    gate = HandshakeAdmission.for_config(MeshConfig())
    assert (gate.max_handshakes, gate.per_host, gate.accept_rate) == (16, 4, 200.0)
    gate.accept_rate = 2
    assert gate.accept_wait(0.0) == 0.0 and gate.accept_wait(0.0) == 0.0
    assert gate.accept_wait(0.0) > 0  # the burst of two is spent
    assert gate.accept_wait(0.5) == 0.0  # half a second at two per second
    assert gate.refusals_to_tell(0.0) == 0
    gate.refused_busy = 3
    assert gate.refusals_to_tell(0.0) == 3
    gate.refused_rate = 2
    assert gate.refusals_to_tell(5.0) == 0 and gate.refusals_to_tell(10.0) == 2


def test_token_bucket_and_quiet() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    assert bucket.take(0.0) and not bucket.take(0.0) and bucket.wait(0.0) == 0.1
    assert bucket.take(0.1)
    quiet = Quiet(every=60, keep=2)
    assert quiet.first("a", 0.0) and not quiet.first("a", 59.0) and quiet.first("a", 60.0)
    assert quiet.first("b", 0.0) and quiet.first("c", 0.0) and quiet.first("b", 1.0) is False
    assert quiet.first("a", 61.0)  # forgotten: only the newest two are kept
