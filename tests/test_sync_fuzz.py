"""Fuzzing the sync protocol's parsers: random bytes, random CBOR arrays and
mutations of valid frames (the test vectors, and a recorded real session).

The invariant everywhere: FrameReader, decode_message and SyncConnection
return frames, messages or events — or raise RemoteProtocolError. No other
exception type, ever; and a reference session never raises at all."""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.entry import DEFAULT_MAX_ENTRY_SIZE, Entry, sign_entry
from agent.errors import RemoteProtocolError
from agent.identity import Identity
from agent.sync import (
    NEED_DATA,
    ConnectionClosed,
    FrameReader,
    MemoryLog,
    Message,
    ReferenceNode,
    SyncConnection,
    decode_message,
    deliver,
    max_frame_for,
)
from agent.sync.wire import LAYOUTS, uvarint

from .strategies import values

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sync_messages.json").read_text("utf-8"))
VALID_FRAMES = [bytes.fromhex(v["frame"]) for v in VECTORS["messages"]]
INVALID_FRAMES = [bytes.fromhex(v["frame"]) for v in VECTORS["invalid"]]
ALL_FRAMES = VALID_FRAMES + INVALID_FRAMES

ALICE = Identity(b"\x01" * 32)
A_KEY, B_KEY = bytes([0xA1]) * 32, bytes([0xB2]) * 32


@functools.cache
def recorded_flights() -> tuple[bytes, ...]:
    """Every byte node A sent node B in a real session: A holds 4 entries, B none.
    B's reference session answers it again exactly, so B can replay it alone."""
    entries: list[Entry] = []
    for seq in range(1, 5):
        prev = entries[-1].hash if entries else None
        entries.append(sign_entry(ALICE, seq=seq, prev=prev, ts=seq, collection="c", body=seq))
    a = ReferenceNode(A_KEY, MemoryLog(entries)).session(B_KEY)
    b = ReferenceNode(B_KEY).session(A_KEY)
    sent, to_b, to_a = [], a.start(), b.start()
    while to_a or to_b:
        sent.append(to_b)
        to_a, to_b = deliver(b, to_b), deliver(a, to_a)
    assert a.conn.closed and b.log.last_change == 4
    return tuple(sent)


def recorded_stream() -> bytes:
    return b"".join(recorded_flights())


def mutate(data: bytes, mutations: list[tuple[int, int, int]]) -> bytes:
    """Replace, insert, drop or cut at positions chosen by ``mutations``."""
    out = bytearray(data)
    for position, value, how in mutations:
        at = position % (len(out) + 1)
        if how == 0 and at < len(out):
            out[at] = value
        elif how == 1:
            out.insert(at, value)
        elif how == 2 and at < len(out):
            del out[at]
        elif how == 3 and at < len(out):
            out[at] ^= 1 << (value % 8)  # one bit
        elif how == 4:
            del out[at:]
    return bytes(out)


mutations = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 4)),
    min_size=1,
    max_size=5,
)
chunkings = st.sampled_from([None, 1, 2, 7, 64])


def frames_and_messages(data: bytes, max_frame: int) -> None:
    """Frames from ``data`` through decode_message: each parses or raises RemoteProtocolError."""
    reader = FrameReader(max_frame)
    reader.feed(data)
    reader.feed_eof()
    try:
        while (body := reader.next_frame()) is not None:
            assert 0 < len(body) <= max_frame
            with contextlib.suppress(RemoteProtocolError):
                assert isinstance(decode_message(body), Message)
    except RemoteProtocolError:
        pass
    assert reader.buffered <= len(data)


def connection(data: bytes, *, eof: bool, chunk: int | None) -> list[object]:
    """``data`` through a SyncConnection: events, or RemoteProtocolError and ERROR state."""
    conn = SyncConnection(max_entry_size=1024)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    events: list[object] = []
    try:
        for piece in pieces:
            if piece:
                conn.receive_data(piece)
            while (event := conn.next_event()) is not NEED_DATA:
                events.append(event)
        if eof:
            conn.receive_data(b"")
            events += conn.events()
            assert isinstance(events[-1], ConnectionClosed)
    except RemoteProtocolError as exc:
        assert str(exc)  # a reason, always
        try:
            conn.next_event()
        except RemoteProtocolError as again:
            assert "ERROR state" in str(again)
        else:
            raise AssertionError("a failed connection handed out another event") from None
    return events


def session(data: bytes, *, chunk: int | None) -> None:
    """``data`` as node A's bytes to a reference node B: it never raises."""
    node = ReferenceNode(B_KEY)
    peer = node.session(A_KEY)
    peer.start()
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in [*pieces, b""]:
        peer.receive(piece)
    assert peer.finished
    assert peer.error is None or str(peer.error)


@given(st.binary(max_size=400), st.sampled_from([1, 2, 64, 300, 16 * 1024]))
def test_random_bytes_through_reader_and_decoder(data: bytes, max_frame: int) -> None:
    frames_and_messages(data, max_frame)


@given(st.binary(max_size=200))
def test_random_bodies_through_the_decoder(body: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(body, max_entry_size=1024)


@given(
    st.sampled_from(sorted(LAYOUTS) + [11, -1]),
    st.lists(
        values | st.binary(min_size=32, max_size=32) | st.sampled_from(["board", "mule", ""]),
        max_size=6,
    ),
)
def test_random_cbor_arrays_through_the_decoder(kind: int, fields: list[object]) -> None:
    try:
        body = cbor2.dumps([kind, *fields], canonical=True)
    except (ValueError, TypeError, OverflowError):  # a value cbor2 cannot write
        return
    try:
        message = decode_message(body, max_entry_size=1024)
    except RemoteProtocolError:
        return
    assert kind == message.TYPE


@given(st.sampled_from(ALL_FRAMES), mutations)
def test_mutated_vectors_through_reader_and_decoder(
    frame: bytes, changes: list[tuple[int, int, int]]
) -> None:
    frames_and_messages(mutate(frame, changes), max_frame_for(DEFAULT_MAX_ENTRY_SIZE))


@given(st.lists(st.sampled_from(ALL_FRAMES), min_size=1, max_size=8), st.booleans(), chunkings)
def test_vector_frames_in_any_order_through_a_connection(
    frames: list[bytes], eof: bool, chunk: int | None
) -> None:
    connection(b"".join(frames), eof=eof, chunk=chunk)


@given(
    st.lists(st.sampled_from(VALID_FRAMES), min_size=1, max_size=8),
    mutations,
    st.booleans(),
    chunkings,
)
def test_mutated_vector_streams_through_a_connection(
    frames: list[bytes],
    changes: list[tuple[int, int, int]],
    eof: bool,
    chunk: int | None,
) -> None:
    connection(mutate(b"".join(frames), changes), eof=eof, chunk=chunk)


@settings(max_examples=100)
@given(mutations, st.booleans(), chunkings)
def test_mutated_real_session_through_a_connection_and_a_session(
    changes: list[tuple[int, int, int]],
    eof: bool,
    chunk: int | None,
) -> None:
    data = mutate(recorded_stream(), changes)
    connection(data, eof=eof, chunk=chunk)
    session(data, chunk=chunk)


def test_the_recorded_session_is_valid_unmutated() -> None:
    node = ReferenceNode(B_KEY)
    peer = node.session(A_KEY)
    peer.start()
    for flight in recorded_flights():  # as they came: B's replies depend on the timing
        peer.receive(flight)
    assert peer.error is None and len(node.log) == 4
    peer.receive(b"")
    assert peer.ended == ConnectionClosed(clean=True)


def test_oversized_prefixes_never_wait_for_their_body() -> None:
    limit = max_frame_for(DEFAULT_MAX_ENTRY_SIZE)
    for announced in (limit + 1, 2**21, 2**63):
        reader = FrameReader(limit)
        reader.feed(uvarint(announced))
        try:
            reader.next_frame()
        except RemoteProtocolError as exc:
            assert "oversized frame" in str(exc)
        else:
            raise AssertionError(f"a prefix announcing {announced} bytes was accepted")
