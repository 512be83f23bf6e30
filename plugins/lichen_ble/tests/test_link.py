"""The sans-IO link core: exact streams or clean errors, whatever the air does."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lichen_ble.link import (
    NEED_DATA,
    DataReceived,
    GattLink,
    LinkClosed,
    LinkOpened,
    Role,
    value_size,
)
from lichen_ble.segments import Ack, Close, CloseCode, Data, Fin, Mode, Open, decode

from .simulation import DELIVER, DUPLICATE, LOSE, SWAP, simulate

faults = st.lists(st.sampled_from([DELIVER, DELIVER, DELIVER, LOSE, DUPLICATE, SWAP]), max_size=80)


@settings(deadline=None)
@given(
    a_data=st.binary(max_size=6000),
    b_data=st.binary(max_size=6000),
    a_faults=faults,
    b_faults=faults,
    mtu=st.integers(min_value=23, max_value=600),
    read_size=st.integers(min_value=1, max_value=3000),
    buffer=st.integers(min_value=600, max_value=20000),
)
def test_any_loss_duplication_or_swap_still_delivers_the_exact_streams(  # noqa: PLR0917
    a_data, b_data, a_faults, b_faults, mtu, read_size, buffer
):
    out = simulate(
        a_data, b_data, a_faults=a_faults, b_faults=b_faults, mtu=mtu,
        read_size=read_size, buffer=buffer,
    )  # fmt: skip
    assert out.a.closed is None and out.b.closed is None, (out.a.closed, out.b.closed)
    assert bytes(out.b.received) == a_data
    assert bytes(out.a.received) == b_data
    assert out.a.eof and out.b.eof


@settings(deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    values=st.lists(st.binary(max_size=40), min_size=1, max_size=20),
)
def test_whatever_values_arrive_the_core_hands_out_a_prefix_or_a_clean_close(data, values):
    """Garbage injected between real segments: the reader sees a prefix of what
    was sent, then (perhaps) LinkClosed — never other bytes, never an exception."""
    central, peripheral = opened(100)
    central.send(data)
    received = bytearray()
    closed = None
    for i, value in enumerate(central.data_to_send(0.0)):
        peripheral.receive_data(value, 0.0)
        if i < len(values):
            peripheral.receive_data(values[i], 0.0)
        while (event := peripheral.next_event()) is not NEED_DATA:
            if isinstance(event, DataReceived):
                received += event.data
            elif isinstance(event, LinkClosed):
                closed = event
    assert data.startswith(bytes(received))
    if len(received) < len(data):
        assert closed is not None


def test_value_size_is_the_mtu_less_three_and_never_above_512():
    assert value_size(23) == 20
    assert value_size(185) == 182
    assert value_size(515) == 512
    assert value_size(517) == 512  # a 513- or 514-byte write without response is dropped


def opened(mtu: int = 517, **central_options: float) -> tuple[GattLink, GattLink]:
    """A central (with ``central_options``) and a peripheral, OPEN exchanged."""
    central = GattLink(Role.CENTRAL, mtu=mtu, **central_options)  # type: ignore[arg-type]
    peripheral = GattLink(Role.PERIPHERAL, mtu=mtu)
    central.start(0.0)
    for value in central.data_to_send(0.0):
        peripheral.receive_data(value, 0.0)
    for value in peripheral.data_to_send(0.0):
        central.receive_data(value, 0.0)
    assert central.next_event() == LinkOpened(value_size(mtu))
    assert peripheral.next_event() == LinkOpened(value_size(mtu))
    return central, peripheral


def test_segments_never_exceed_the_value_size():
    central, _ = opened(517)
    central.send(bytes(100_000))
    values = central.data_to_send(0.0)
    assert values and max(len(v) for v in values) == 512
    assert sum(len(s.payload) for v in values if isinstance(s := decode(v), Data)) == 16384


def test_an_open_of_another_version_is_refused_naming_both():
    peripheral = GattLink(Role.PERIPHERAL, mtu=100)
    peripheral.start(0.0)
    peripheral.receive_data(Open(3, 97, 4096).encode(), 0.0)
    [close] = peripheral.data_to_send(0.0)
    segment = decode(close)
    assert isinstance(segment, Close) and segment.code == CloseCode.VERSION
    event = peripheral.next_event()
    assert isinstance(event, LinkClosed)
    assert "version 3" in event.reason and "versions 1 to 2" in event.reason


def test_data_beyond_the_credit_granted_ends_the_link():
    _, peripheral = opened(517)
    for seq in range(peripheral.buffer // 509 + 2):
        peripheral.receive_data(Data(seq, bytes(509)).encode(), 0.0)
    closed = [e for e in iter(peripheral.next_event, NEED_DATA) if isinstance(e, LinkClosed)]
    assert closed and "beyond the credit" in closed[0].reason
    assert isinstance(decode(peripheral.data_to_send(0.0)[-1]), Close)


def test_a_peer_that_acknowledges_nothing_ends_the_link_after_link_timeout():
    central, _ = opened(100, link_timeout=20.0)
    central.send(b"x" * 50)
    central.data_to_send(1.0)  # lost: the peer never answers
    now = 1.0
    resent = 0
    last: list[bytes] = []
    while central.closed is None:
        now = central.next_timer()  # type: ignore[assignment]
        assert now is not None
        central.handle_timer(now)
        last = central.data_to_send(now)
        resent += sum(isinstance(decode(v), Data) for v in last)
    assert resent >= 3  # it tried again, backing off
    assert now == pytest.approx(21.0)
    assert "acknowledged nothing for 20 s" in central.closed.reason
    assert decode(last[-1]) == Close(CloseCode.TIMEOUT, central.closed.reason)
    assert central.next_timer() is None


def test_a_lost_ack_is_recovered_by_retransmission_and_a_duplicate_ack():
    central, peripheral = opened(100)
    central.send(b"hello")
    for value in central.data_to_send(1.0):
        peripheral.receive_data(value, 1.0)
    peripheral.send_eof()
    peripheral.data_to_send(1.0)  # its FIN and ACK are lost
    due = central.next_timer()
    assert due is not None
    central.handle_timer(due)
    again = central.data_to_send(due)
    assert [decode(v) for v in again] == [Data(0, b"hello")]
    peripheral.receive_data(again[0], due)
    answer = [decode(v) for v in peripheral.data_to_send(due)]
    assert answer == [Ack(1, peripheral.buffer - 5)]  # a duplicate: acknowledged at once
    assert Fin(0) not in answer  # the FIN is the peer's to resend, on its own timer
    central.receive_data(answer[0].encode(), due)
    assert central.flushed


def test_the_close_reason_fits_the_smallest_value():
    value = Close(CloseCode.PROTOCOL, "é" * 100).encode(20)
    assert len(value) <= 20
    assert decode(value) == Close(CloseCode.PROTOCOL, "é" * 9)


def exchange_open(central: GattLink, peripheral: GattLink) -> list[bytes]:
    """The central starts; the values each way until nothing moves. Returns the
    peripheral's values (its answer)."""
    central.start(0.0)
    answers: list[bytes] = []
    for value in central.data_to_send(0.0):
        peripheral.receive_data(value, 0.0)
    for value in peripheral.data_to_send(0.0):
        answers.append(value)
        central.receive_data(value, 0.0)
    return answers


def test_a_mule_link_opens_with_version_2_and_the_peripheral_learns_the_mode():
    central = GattLink(Role.CENTRAL, mtu=517, mode=Mode.MULE)
    peripheral = GattLink(Role.PERIPHERAL, mtu=517, modes=(Mode.SYNC, Mode.MULE))
    central.start(0.0)
    [open_] = central.data_to_send(0.0)
    assert open_.hex() == "0102020001004000"  # the vector in docs/ble.md
    peripheral.receive_data(open_, 0.0)
    [answer] = peripheral.data_to_send(0.0)
    assert decode(answer) == Open(2, 512, 16384, Mode.MULE)
    central.receive_data(answer, 0.0)
    assert central.next_event() == LinkOpened(512) == peripheral.next_event()
    assert peripheral.mode is Mode.MULE
    central.send(b"GET /mule/v1/info HTTP/1.1\r\n\r\n")
    for value in central.data_to_send(0.0):
        peripheral.receive_data(value, 0.0)
    event = peripheral.next_event()
    assert isinstance(event, DataReceived) and event.data.startswith(b"GET /mule/v1/info")


def test_a_sync_link_still_opens_with_the_version_1_bytes():
    central, peripheral = GattLink(Role.CENTRAL, mtu=517), GattLink(Role.PERIPHERAL, mtu=517)
    central.start(0.0)
    [open_] = central.data_to_send(0.0)
    assert open_.hex() == "0101020000004000"
    peripheral.receive_data(open_, 0.0)
    assert peripheral.data_to_send(0.0) == [open_]
    assert peripheral.mode is Mode.SYNC


def test_a_version_1_node_refuses_the_mule_open_as_another_version():
    """What a version-1 node reads in the 8 bytes (its layout: version u8,
    max_value u16, window u32) is version 2: CLOSE code 3, and the central
    says why."""
    mule_open = Open(2, 512, 16384, Mode.MULE).encode()
    assert struct.unpack(">BBHI", mule_open)[1] == 2 and len(mule_open) == 8
    central = GattLink(Role.CENTRAL, mtu=517, mode=Mode.MULE)
    old = GattLink(Role.PERIPHERAL, mtu=517, max_version=1, modes=(Mode.SYNC, Mode.MULE))
    [close] = exchange_open(central, old)
    assert decode(close) == Close(
        CloseCode.VERSION, "the peer speaks link protocol version 2; this node speaks version 1"
    )
    event = central.next_event()
    assert isinstance(event, LinkClosed) and not event.clean
    assert "VERSION: it speaks no link protocol version 2, which a mule link needs" in event.reason


def test_a_node_that_serves_no_mule_exchange_refuses_mule_mode_with_code_5():
    central = GattLink(Role.CENTRAL, mtu=517, mode=Mode.MULE)
    board = GattLink(Role.PERIPHERAL, mtu=517)  # sync only
    [close] = exchange_open(central, board)
    assert decode(close) == Close(CloseCode.MODE, "this node serves no mule links")
    event = central.next_event()
    assert isinstance(event, LinkClosed) and "MODE: this node serves no mule links" in event.reason


def test_an_open_answered_in_another_mode_is_a_protocol_error():
    central = GattLink(Role.CENTRAL, mtu=517, mode=Mode.MULE)
    central.start(0.0)
    central.data_to_send(0.0)
    central.receive_data(Open(1, 512, 16384).encode(), 0.0)
    event = central.next_event()
    assert isinstance(event, LinkClosed) and "answered in sync mode, not mule" in event.reason
