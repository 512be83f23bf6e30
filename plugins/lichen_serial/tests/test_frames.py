"""The stream decoder: whole buffers, one byte at a time, trailing data, noise,
corruption, reboots, loss — and never a reading from a frame whose CRC failed."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lichen_serial.errors import FrameError
from lichen_serial.frames import (
    NEED_DATA,
    BadFrame,
    Describe,
    Event,
    FrameDecoder,
    FramesLost,
    Readings,
    Reboot,
    UnknownFrame,
)
from lichen_serial.framing import MAX_CHUNK, FrameType, cobs_decode
from lichen_serial.payloads import Channel, FrameEncoder, RawValue, Status

from .fakes import CLIMATE

values_lists = st.lists(
    st.builds(
        RawValue,
        channel=st.integers(0, 63),
        raw=st.integers(-(2**63), 2**63 - 1),
        status=st.sampled_from(Status),
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda v: v.channel,
)


def drain(decoder: FrameDecoder) -> list[Event]:
    events: list[Event] = []
    while (event := decoder.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        events.append(event)
    return events


def feed(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Event], FrameDecoder]:
    """Decode ``data`` delivered in pieces cut at ``cuts`` (draining after each)."""
    decoder = FrameDecoder()
    events: list[Event] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        decoder.receive_data(data[start:cut])
        events += drain(decoder)
        start = cut
    return events, decoder


def three_ways(data: bytes) -> list[Event]:
    """The events of ``data`` fed whole, one byte at a time, and in two halves —
    which must agree."""
    whole, _ = feed(data)
    assert feed(data, range(1, len(data)))[0] == whole
    assert feed(data, [len(data) // 2])[0] == whole
    return whole


def readings(events: list[Event]) -> list[tuple[RawValue, ...]]:
    return [e.values for e in events if isinstance(e, Readings)]


# ------------------------------------------------------------------ properties


def crc_valid_chunks(data: bytes) -> int:
    """An independent count of the delimited chunks of ``data`` that hold a
    version-1 frame whose CRC-32 (zlib's) matches."""
    count = 0
    for chunk in data.split(b"\x00")[:-1]:  # the last piece has no delimiter yet
        if not chunk or len(chunk) > MAX_CHUNK:
            continue
        try:
            body = cobs_decode(chunk)
        except FrameError:
            continue
        crc = int.from_bytes(body[-4:], "little")
        count += len(body) >= 9 and body[0] >> 4 == 1 and zlib.crc32(body[:-4]) == crc
    return count


pieces = st.lists(
    st.binary(max_size=300)
    | st.builds(lambda v, c: FrameEncoder(7, c).readings(v), values_lists, st.integers(0, 0xFFFF)),
    max_size=12,
)


@given(pieces, st.lists(st.integers(0, 4000), max_size=8))
def test_any_bytes_any_split_never_raise_and_agree(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole, decoder = feed(data)
    split, _ = feed(data, [c for c in cuts if c <= len(data)])
    assert split == whole
    assert decoder.stats.bytes == len(data)
    assert decoder.buffered <= MAX_CHUNK + 1
    # frames come only from chunks whose CRC matched, and from every one of them
    assert decoder.stats.frames == crc_valid_chunks(data)
    framed = [e for e in whole if not isinstance(e, BadFrame | FramesLost | Reboot)]
    assert len(framed) + decoder.stats.reasons["payload"] == decoder.stats.frames


@given(st.data())
def test_spliced_frames_noise_and_corruption(data: st.DataObject) -> None:
    """Frames with noise between them, some corrupted, some cut short: exactly
    the intact frames' readings come out, in order, and the gaps are counted."""
    encoder = FrameEncoder(boot_id=data.draw(st.integers(0, 0xFFFF)))
    stream = bytearray()
    intact: list[tuple[RawValue, ...]] = []
    fates: list[str] = []
    for _ in range(data.draw(st.integers(1, 12))):
        stream += data.draw(st.binary(max_size=30))  # noise, zeros included
        values = tuple(data.draw(values_lists))
        frame = bytearray(encoder.readings(values))
        fate = data.draw(st.sampled_from(["intact", "intact", "flipped", "cut"]))
        if fate == "flipped":
            at = data.draw(st.integers(1, len(frame) - 2))
            frame[at] ^= data.draw(st.integers(1, 255))
        elif fate == "cut":
            frame = frame[: data.draw(st.integers(1, len(frame) - 2))]  # and its closing 00
        else:
            intact.append(values)
        fates.append(fate)
        stream += frame
    stream += data.draw(st.binary(max_size=10).filter(lambda b: 0 not in b))  # trailing
    events = three_ways(bytes(stream))
    assert readings(events) == intact  # never one from a frame whose CRC failed
    # loss is seen between two intact frames: from the first to the last
    kept = [i for i, fate in enumerate(fates) if fate == "intact"]
    lost = kept[-1] - kept[0] + 1 - len(kept) if kept else 0
    assert sum(e.count for e in events if isinstance(e, FramesLost)) == lost
    assert not any(isinstance(e, Reboot) for e in events)


@given(st.data())
def test_reboot_mid_frame_is_a_reboot_not_loss(data: st.DataObject) -> None:
    before, after = FrameEncoder(boot_id=1), FrameEncoder(boot_id=2)
    old = [before.readings(data.draw(values_lists)) for _ in range(data.draw(st.integers(2, 5)))]
    cut = data.draw(st.integers(1, len(old[-1]) - 2))  # its closing 00 at least
    new = [after.describe_all(CLIMATE)] + [after.readings([RawValue(0, 1)]) for _ in range(3)]
    events = three_ways(b"".join(old[:-1]) + old[-1][:cut] + b"".join(new))
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("Reboot") == 1
    assert kinds.index("Reboot") < kinds.index("Describe")
    assert len(readings(events)) == len(old) - 1 + 3
    assert not any(isinstance(e, FramesLost) for e in events)


@given(st.binary(min_size=1, max_size=400), st.data())
def test_trailing_data_waits_for_its_delimiter(tail: bytes, data: st.DataObject) -> None:
    encoder = FrameEncoder(boot_id=5)
    frame = encoder.readings(data.draw(values_lists))
    partial = encoder.readings([RawValue(0, 42)])[:-1]  # all but the closing 00
    events, decoder = feed(frame + partial)
    assert len(readings(events)) == 1
    decoder.receive_data(b"\x00")
    assert readings(drain(decoder)) == [(RawValue(0, 42),)]
    decoder.receive_data(tail)
    drain(decoder)  # whatever it is, it is not a crash


# ------------------------------------------------------------------ examples


def test_counter_gap_is_loss_and_wrap_around_is_not() -> None:
    encoder = FrameEncoder(boot_id=9, counter=0xFFFE)
    one = [RawValue(0, 1)]
    stream = encoder.readings(one) + encoder.readings(one)  # 0xFFFE, 0xFFFF
    stream += encoder.readings(one)  # 0: wrapped, in order
    encoder.counter += 4
    stream += encoder.readings(one)  # 5
    events = three_ways(stream)
    lost = [e for e in events if isinstance(e, FramesLost)]
    assert lost == [FramesLost(boot_id=9, count=4, expected=1, received=5)]


def test_new_boot_id_or_counter_going_back_is_a_reboot() -> None:
    one = [RawValue(0, 1)]
    a = FrameEncoder(boot_id=1, counter=500)
    stream = a.readings(one) + FrameEncoder(boot_id=2).readings(one)
    stream += FrameEncoder(boot_id=2).readings(one)  # same boot id, counter 0 again
    events, decoder = feed(stream)
    assert [e for e in events if isinstance(e, Reboot)] == [
        Reboot(previous_boot_id=1, boot_id=2, counter=0),
        Reboot(previous_boot_id=2, boot_id=2, counter=0),
    ]
    assert decoder.stats.reboots == 2 and decoder.stats.lost == 0


def test_oversize_chunk_is_one_bad_frame_and_decoding_resumes() -> None:
    encoder = FrameEncoder(boot_id=1)
    good = encoder.readings([RawValue(3, -7)])
    for stream in (b"\x00" + b"\x41" * 5000 + good, b"\x41" * (MAX_CHUNK + 1) + good):
        events = three_ways(stream)
        bad = [e for e in events if isinstance(e, BadFrame)]
        assert [b.reason for b in bad] == ["oversize"]
        assert readings(events) == [(RawValue(3, -7),)]


def test_exactly_the_longest_chunk_is_not_oversize() -> None:
    values = [RawValue(i, -(2**63)) for i in range(21)] + [RawValue(21 + i, 0) for i in range(5)]
    frame = FrameEncoder(boot_id=1).readings(values)
    assert len(frame) == MAX_CHUNK + 2
    assert readings(three_ways(frame)) == [tuple(values)]


def test_empty_chunks_are_just_delimiters() -> None:
    events, decoder = feed(b"\x00" * 50)
    assert events == [] and decoder.stats.malformed == 0


def test_connection_lost_counts_a_cut_frame_and_keeps_the_link_state() -> None:
    encoder = FrameEncoder(boot_id=1)
    one = [RawValue(0, 1)]
    decoder = FrameDecoder()
    decoder.receive_data(encoder.readings(one) + encoder.readings(one)[:5])
    decoder.connection_lost()  # the complete frame first, then the cut one
    events = drain(decoder)
    assert [type(e) for e in events] == [Readings, BadFrame]
    assert isinstance(events[1], BadFrame) and events[1].reason == "truncated"
    encoder.counter += 2  # the cut frame and one sent while unplugged
    decoder.receive_data(encoder.readings(one))
    assert [type(e) for e in drain(decoder)] == [FramesLost, Readings]
    assert decoder.stats.lost == 3


def test_unknown_types_and_bad_payloads_still_advance_the_counter() -> None:
    encoder = FrameEncoder(boot_id=1)
    stream = encoder.frame(9, b"future") + encoder.frame(FrameType.READINGS, b"\xc0\x00")
    stream += encoder.describe([Channel("t")], 0)
    events, decoder = feed(stream)
    assert isinstance(events[0], UnknownFrame) and events[0].payload == b"future"
    assert isinstance(events[1], BadFrame) and events[1].reason == "payload"
    assert isinstance(events[2], Describe) and events[2].channel == Channel("t")
    assert decoder.stats.frames == 3 and decoder.stats.lost == 0
    assert decoder.stats.reasons == {"payload": 1} and decoder.stats.malformed == 1


@pytest.mark.parametrize("size", [1, 7, 4096, 100_000])
def test_long_streams_keep_the_buffer_small(size: int) -> None:
    encoder = FrameEncoder(boot_id=1)
    stream = b"".join(encoder.readings([RawValue(0, i)]) for i in range(3000))
    decoder = FrameDecoder()
    count = 0
    for start in range(0, len(stream), size):
        decoder.receive_data(stream[start : start + size])
        count += len(readings(drain(decoder)))
        assert decoder.buffered <= max(size, MAX_CHUNK)
    assert count == 3000 and decoder.stats.lost == 0
