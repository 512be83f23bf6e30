"""A hostile link: bit flips, truncation, replays, garbage and fuzz against the sans-IO channel.

The invariant, h11-style: whatever arrives, the channel either parses it or
raises ChannelRejected — never anything else, never garbage passed up, and
never more than one frame and one message held in memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.channel import ChannelRejected, Event, HandshakeComplete, Message, SecureChannel
from agent.channel.framing import MAX_RECORD_BODY

from .test_channel_sansio import ALICE, BOB, accept, drain, feed, handshake, messages, pair

# (sender, receiver) of the four handshake flights: messages 1-3, then READY.
FLIGHTS = ((0, 1), (1, 0), (0, 1), (1, 0))
FLIGHT_LENGTHS = (2 + 32, 2 + 192, 2 + 160, 2 + 17)


def _tampered_handshake(flight: int, mask: int | None, position: int) -> tuple[str, int]:
    """Run a handshake whose ``flight`` is changed (``mask`` XORed into the byte at
    ``position``, or the flight cut to ``position`` bytes when ``mask`` is None).
    Return the refusal reason and how many sides completed."""
    parties = pair()
    completed = 0
    try:
        for index, (s, r) in enumerate(FLIGHTS):
            data = parties[s].data_to_send()
            if index == flight:
                changed = bytearray(data[:position] if mask is None else data)
                if mask is not None:
                    changed[position] ^= mask
                data = bytes(changed)
            events = feed(parties[r], data)
            completed += sum(isinstance(e, HandshakeComplete) for e in events)
            if index == flight and mask is None:
                parties[r].receive_data(b"")  # the link ends after the truncated flight
                drain(parties[r])
        for party in parties:  # links that carried a changed length prefix end here
            party.receive_data(b"")
            drain(party)
    except ChannelRejected as exc:
        return exc.reason, completed
    raise AssertionError(f"flight {flight} tampered at {position} went unnoticed")


@pytest.mark.parametrize("flight", range(4), ids=["msg1", "msg2", "msg3", "ready"])
def test_every_bit_flip_in_every_handshake_flight_is_detected(flight: int) -> None:
    rng = random.Random(flight)
    for position in range(FLIGHT_LENGTHS[flight]):
        for bit in {0, rng.randrange(8)}:
            reason, completed = _tampered_handshake(flight, 1 << bit, position)
            # Only the responder may have finished, and only if just READY was hit.
            assert completed == (1 if flight == 3 else 0), (position, reason)
            if position >= 2:  # a changed body is caught by cryptography, not by the link's end
                assert "ended" not in reason, (position, reason)


@pytest.mark.parametrize("flight", range(4), ids=["msg1", "msg2", "msg3", "ready"])
def test_every_truncation_of_every_handshake_flight_is_detected(flight: int) -> None:
    for length in range(FLIGHT_LENGTHS[flight]):
        reason, completed = _tampered_handshake(flight, None, length)
        assert completed == (1 if flight == 3 else 0)
        assert "ended" in reason


def _open_pair() -> tuple[SecureChannel, SecureChannel]:
    a, b = pair(seed=3)
    handshake(a, b)
    return a, b


SENT = [b"hello", bytes(range(256)) * 300, b"bye"]


def _transport_flight() -> bytes:
    a, _ = _open_pair()
    for data in SENT:
        a.send(data)
    a.close()
    return a.data_to_send()


FLIGHT = _transport_flight()


def _receive(data: bytes) -> tuple[list[Event], ChannelRejected | None]:
    _, b = _open_pair()
    events: list[Event] = []
    try:
        events += feed(b, data)
        b.receive_data(b"")
        events += drain(b)
    except ChannelRejected as exc:
        return events, exc
    return events, None


def _is_prefix(received: list[bytes]) -> bool:
    return received == SENT[: len(received)]


def test_the_untouched_flight_arrives_whole() -> None:
    events, error = _receive(FLIGHT)
    assert error is None and messages(events) == SENT


@given(position=st.integers(min_value=0, max_value=len(FLIGHT) - 1), bit=st.integers(0, 7))
def test_a_bit_flip_in_transport_is_detected_and_never_passed_up(position: int, bit: int) -> None:
    tampered = bytearray(FLIGHT)
    tampered[position] ^= 1 << bit
    events, error = _receive(bytes(tampered))
    assert error is not None
    assert _is_prefix(messages(events)) and len(messages(events)) < len(SENT)


def test_a_bit_flip_at_every_position_of_a_small_record_is_detected() -> None:
    a, _ = _open_pair()
    a.send(b"tiny")
    record = a.data_to_send()
    for position in range(len(record)):
        tampered = bytearray(record)
        tampered[position] ^= 0x80
        events, error = _receive(bytes(tampered))
        assert error is not None and events == [], position


@given(length=st.integers(min_value=0, max_value=len(FLIGHT) - 1))
def test_truncated_transport_is_detected(length: int) -> None:
    events, error = _receive(FLIGHT[:length])
    assert error is not None and "ended" in error.reason
    assert _is_prefix(messages(events))


def test_dropped_reordered_and_replayed_records_are_detected() -> None:
    a, _ = _open_pair()
    frames = []
    for data in (b"one", b"two", b"three"):
        a.send(data)
        frames.append(a.data_to_send())
    for order in ([1, 2], [0, 2, 1], [0, 0], [0, 1, 1]):
        events, error = _receive(b"".join(frames[i] for i in order))
        assert error is not None and "does not decrypt" in error.reason, order
        assert _is_prefix_of([b"one", b"two", b"three"], messages(events))


def _is_prefix_of(full: list[bytes], got: list[bytes]) -> bool:
    return got == full[: len(got)]


def test_garbage_fails_fast_and_memory_stays_bounded() -> None:
    rng = random.Random(5)
    # During the handshake only the exact next length is acceptable: 2 bytes suffice.
    b = SecureChannel(BOB, initiator=False, trust=accept)
    b.receive_data(b"\xff\xff")
    with pytest.raises(ChannelRejected, match="announced a 65535-byte message where 32"):
        b.next_event()
    # Once open, an endless stream of garbage fails at its first frame.
    _, b = _open_pair()
    fed = 0
    with pytest.raises(ChannelRejected):
        while True:
            chunk = rng.randbytes(1000)
            fed += len(chunk)
            b.receive_data(chunk)
            drain(b)
            assert b._reader.buffered <= 2 + 65535
    assert fed <= 2 + 65535 + 1000


def test_a_message_over_the_limit_is_refused_before_it_is_all_held() -> None:
    a = SecureChannel(ALICE, initiator=True, trust=accept)  # may send up to 1 MiB
    b = SecureChannel(BOB, initiator=False, trust=accept, max_message_size=100_000)
    handshake(a, b)
    a.send(bytes(5 * MAX_RECORD_BODY))
    flight = a.data_to_send()
    frame = 2 + 16 + 1 + MAX_RECORD_BODY
    assert len(flight) == 5 * frame
    assert feed(b, flight[:frame]) == [] and b._reassembler.pending == MAX_RECORD_BODY
    with pytest.raises(ChannelRejected, match="larger than the 100000-byte limit"):
        feed(b, flight[frame : 2 * frame])


@given(st.binary(max_size=400))
def test_fuzz_random_bytes_to_a_fresh_responder(data: bytes) -> None:
    b = SecureChannel(BOB, initiator=False, trust=accept)
    _parse_or_reject(b, data)


@given(st.binary(max_size=400))
def test_fuzz_random_bytes_to_an_initiator_awaiting_message_2(data: bytes) -> None:
    a, _ = pair()
    a.data_to_send()
    _parse_or_reject(a, data)


@given(st.binary(max_size=400))
def test_fuzz_random_bytes_to_an_open_channel(data: bytes) -> None:
    _, b = _open_pair()
    _parse_or_reject(b, data)


def _parse_or_reject(channel: SecureChannel, data: bytes) -> None:
    try:
        channel.receive_data(data)
        drain(channel)
        channel.receive_data(b"")
        drain(channel)
    except ChannelRejected:
        pass


EDIT = st.tuples(
    st.sampled_from(["flip", "insert", "delete"]),
    st.integers(0, 400),
    st.binary(min_size=1, max_size=8),
)


@given(flight=st.integers(0, 3), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_fuzz_mutated_handshakes(flight: int, edits: list[tuple[str, int, bytes]]) -> None:
    """Any mutation of any handshake flight: parsed or ChannelRejected, never
    anything else, and a side that completes has the genuine peer and the same
    session as the other side."""
    parties = pair(seed=9)
    completed: dict[int, HandshakeComplete] = {}
    try:
        for index, (s, r) in enumerate(FLIGHTS):
            data = parties[s].data_to_send()
            if index == flight:
                data = _mutate(data, edits)
            for event in feed(parties[r], data):
                if isinstance(event, HandshakeComplete):
                    completed[r] = event
        for party in parties:
            party.receive_data(b"")
            drain(party)
    except ChannelRejected:
        pass
    genuine = {0: BOB.node_id, 1: ALICE.node_id}
    for side, event in completed.items():
        assert event.peer == genuine[side]
    if len(completed) == 2:
        assert completed[0].handshake_hash == completed[1].handshake_hash


def _mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    mutable = bytearray(data)
    for kind, where, blob in edits:
        at = where % (len(mutable) + 1)
        if kind == "flip" and mutable:
            mutable[at % len(mutable)] ^= blob[0]
        elif kind == "insert":
            mutable[at:at] = blob
        else:
            del mutable[at : at + len(blob)]
    return bytes(mutable)


def test_messages_before_the_damage_are_delivered_then_the_error() -> None:
    a, _ = _open_pair()
    a.send(b"good")
    a.send(b"bad")
    flight = bytearray(a.data_to_send())
    flight[-1] ^= 1
    _, b = _open_pair()
    b.receive_data(bytes(flight))
    assert b.next_event() == Message(data=b"good")
    with pytest.raises(ChannelRejected, match="transport message 2 does not decrypt"):
        b.next_event()
