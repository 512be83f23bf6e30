"""Sync protocol wire format: frames, message layouts, and the decoder's fuzz invariant
(it parses, or it raises RemoteProtocolError — never anything else)."""

from __future__ import annotations

import functools

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.entry import Entry, sign_entry
from agent.errors import LocalProtocolError, RemoteProtocolError
from agent.identity import Identity
from agent.sync import (
    MAX_SEQ,
    Bye,
    ConnectionClosed,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    FrameReader,
    Have,
    HaveEnd,
    Hello,
    Live,
    Message,
    SyncConnection,
    Want,
    WantEnd,
    decode_message,
    encode_message,
    frame_message,
    max_frame_for,
)
from agent.sync.wire import uvarint

KEY = Identity(b"\x01" * 32).node_id.key
OTHER = Identity(b"\x02" * 32).node_id.key


@functools.cache
def entry(seq: int = 1, size: int = 10) -> Entry:
    ident = Identity(b"\x01" * 32)
    prev = None if seq == 1 else bytes(32)
    return sign_entry(ident, seq=seq, prev=prev, ts=seq, collection="c", body="x" * size)


def sample_messages() -> list[Message]:
    return [
        Hello(node=KEY, role="mule", since=7, change=2**40),
        Have(author=KEY, from_seq=1, to_seq=MAX_SEQ),
        Have(author=OTHER, from_seq=3, to_seq=3, head_hash=b"\x07" * 32),
        HaveEnd(change=0),
        Want(author=KEY, from_seq=2, to_seq=5),
        WantEnd(),
        EntryData(entry=entry()),
        Credit(entries=0, bytes=2**32 - 1),
        Done(change=12),
        Live(),
        Bye(reason="é" * 10),
        ErrorMessage(reason=""),
    ]


messages = st.sampled_from(sample_messages())


def frames_of(body: bytes) -> list[bytes]:
    reader = FrameReader(max_frame_for(16 * 1024))
    reader.feed(body)
    out = []
    while (frame := reader.next_frame()) is not None:
        out.append(frame)
    return out


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: m.NAME)
def test_every_message_round_trips(message: Message) -> None:
    data = frame_message(message)
    (body,) = frames_of(data)
    assert decode_message(body) == message
    assert body == encode_message(message)
    assert cbor2.loads(body)[0] == message.TYPE


def test_varint_prefix_is_shortest_leb128() -> None:
    assert [uvarint(n).hex() for n in (0, 1, 127, 128, 300, 16448)] == [
        "00",
        "01",
        "7f",
        "8001",
        "ac02",
        "c08001",
    ]
    with pytest.raises(ValueError):
        uvarint(-1)


@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_reader_gives_the_same_frames_whole_bytewise_and_in_chunks(
    batch: list[Message], data: st.DataObject
) -> None:
    stream = b"".join(frame_message(m) for m in batch)
    expected = [encode_message(m) for m in batch]
    assert frames_of(stream) == expected
    for cuts in (
        [1] * len(stream),
        data.draw(st.lists(st.integers(1, 50), min_size=1, max_size=len(stream))),
    ):
        reader = FrameReader(max_frame_for(16 * 1024))
        got, pos, i = [], 0, 0
        while pos < len(stream):
            size = cuts[i % len(cuts)]
            reader.feed(stream[pos : pos + size])
            pos, i = pos + size, i + 1
            while (frame := reader.next_frame()) is not None:
                got.append(frame)
        assert got == expected
        assert reader.buffered == 0


def test_trailing_partial_frame_waits_then_is_truncation_at_eof() -> None:
    stream = frame_message(WantEnd()) + frame_message(Done(change=3))[:-1]
    reader = FrameReader(100)
    reader.feed(stream)
    assert reader.next_frame() == encode_message(WantEnd())
    assert reader.next_frame() is None  # waits for the rest
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError, match="truncated frame: the stream ended after 2 of"):
        reader.next_frame()


def test_eof_inside_a_length_prefix_is_truncation() -> None:
    reader = FrameReader(1 << 20)
    reader.feed(b"\x80")
    assert reader.next_frame() is None
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError, match="inside a length prefix"):
        reader.next_frame()


def test_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    limit = max_frame_for(16 * 1024)
    reader = FrameReader(limit)
    reader.feed(uvarint(limit + 1))  # not one byte of the body has arrived
    with pytest.raises(RemoteProtocolError, match=f"oversized frame: {limit + 1} bytes"):
        reader.next_frame()
    reader = FrameReader(limit)
    reader.feed(b"\xff\xff\xff")  # the prefix alone is already too long
    with pytest.raises(RemoteProtocolError, match="oversized frame"):
        reader.next_frame()


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    reader = FrameReader(300)
    reader.feed(uvarint(300) + b"\x00" * 300)
    assert reader.next_frame() == b"\x00" * 300


def test_entry_larger_than_the_cap_is_refused() -> None:
    big = entry(2, 2000)
    body = encode_message(EntryData(entry=big))
    with pytest.raises(RemoteProtocolError, match="ENTRY does not hold a valid entry"):
        decode_message(body, max_entry_size=1000)
    conn = SyncConnection(max_entry_size=1000)
    with pytest.raises(LocalProtocolError, match="above the entry cap"):
        conn.send(EntryData(entry=big))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({0: 1}, "non-empty CBOR array"),
        ([], "non-empty CBOR array"),
        (["HELLO"], "unknown message type 'HELLO'"),
        ([99], "unknown message type 99"),
        ([0, 2, KEY, "board", 0, 0], "speaks sync protocol version 2; this node speaks version 1"),
        ([0, 1, KEY, "phone", 0, 0], "HELLO role must be one of"),
        ([0, 1, KEY[:31], "board", 0, 0], "HELLO node must be 32 bytes"),
        ([0, 1, KEY, "board", -1, 0], "HELLO since"),
        ([0, 1, KEY, "board", 0, True], "HELLO change"),
        ([1, KEY, 1], "HAVE has 2 fields; expected 3 or 4"),
        ([1, KEY, 0, 5], "HAVE from_seq must be at least 1"),
        ([1, KEY, 6, 5], "HAVE from_seq 6 is above to_seq 5"),
        ([1, KEY, 1, 2**63], "HAVE to_seq"),
        ([1, KEY, 1, 5, b"short"], "HAVE head_hash must be 32 bytes"),
        ([1, KEY, 1, 5, None], "HAVE head_hash must be 32 bytes"),
        ([2, 1.5], "HAVE_END change"),
        ([3, "key", 1, 2], "WANT author must be 32 bytes"),
        ([4, 1], "WANT_END has 1 fields; expected 0"),
        ([5, "raw"], "ENTRY must carry the entry as bytes"),
        ([5, b"\x82"], "ENTRY does not hold a valid entry"),
        ([6, 2**32, 0], "CREDIT entries"),
        ([7], "DONE has 0 fields; expected 1"),
        ([9, b"bytes"], "BYE reason must be text"),
        ([10, "x" * 401], "ERROR reason must be text of at most 400"),
    ],
)
def test_bad_messages_name_their_problem(value: object, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem.replace("(", r"\(")):
        decode_message(cbor2.dumps(value, canonical=True))


def test_non_canonical_and_trailing_bytes_are_garbage() -> None:
    for body in (
        bytes.fromhex("811804"),  # 4 as 0x1804
        bytes.fromhex("9f04ff"),  # indefinite-length array
        bytes.fromhex("810400"),  # trailing byte
        bytes.fromhex("a10001a10001"),
    ):
        with pytest.raises(RemoteProtocolError, match="garbage"):
            decode_message(body)


def _check_stream(data: bytes, *, eof: bool, chunk: int | None = None) -> None:
    """The invariant: events, NEED_DATA or ConnectionClosed — or RemoteProtocolError."""
    conn = SyncConnection(max_entry_size=1024)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    try:
        for piece in pieces:
            if piece:
                conn.receive_data(piece)
            for _ in conn.events():
                pass
        if eof:
            conn.receive_data(b"")
            events = list(conn.events())
            assert isinstance(events[-1], ConnectionClosed)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError, match="ERROR state"):
            conn.next_event()


@given(st.binary(max_size=300), st.booleans(), st.sampled_from([None, 1, 5]))
def test_fuzz_random_bytes(data: bytes, eof: bool, chunk: int | None) -> None:
    _check_stream(data, eof=eof, chunk=chunk)


VALID_STREAM = b"".join(
    frame_message(m)
    for m in [
        Hello(node=KEY, role="board", since=0, change=3),
        Credit(entries=4, bytes=4096),
        Live(),
        Have(author=KEY, from_seq=1, to_seq=3, head_hash=bytes(32)),
        HaveEnd(change=3),
        Bye(reason="done"),
    ]
)


@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID_STREAM) - 1), st.integers(0, 255), st.integers(0, 2)),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
    st.sampled_from([None, 1, 7]),
)
def test_fuzz_mutated_valid_stream(
    mutations: list[tuple[int, int, int]], eof: bool, chunk: int | None
) -> None:
    data = bytearray(VALID_STREAM)
    for where, value, how in mutations:
        position = min(where, len(data) - 1) if data else 0
        if how == 0 and data:
            data[position] = value  # replace a byte
        elif how == 1:
            data.insert(position, value)  # insert one
        elif data:
            del data[position]  # drop one
    _check_stream(bytes(data), eof=eof, chunk=chunk)


def test_unmutated_valid_stream_parses_whole_bytewise_and_with_trailing_data() -> None:
    for chunk in (None, 1):
        conn = SyncConnection()
        pieces = [VALID_STREAM] if chunk is None else [bytes([b]) for b in VALID_STREAM]
        events: list[object] = []
        for piece in pieces:
            conn.receive_data(piece)
            events += conn.events()
        assert [type(e) for e in events] == [Hello, Credit, Live, Have, HaveEnd, Bye]
    conn = SyncConnection()
    conn.receive_data(VALID_STREAM + b"\x05")  # a frame's first byte: waits for the rest
    assert len(list(conn.events())) == 6
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="truncated"):
        list(conn.events())
