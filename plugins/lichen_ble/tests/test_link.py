"""The sans-IO link core: exact streams or clean errors, whatever the air does."""

from __future__ import annotations

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
from lichen_ble.segments import Ack, Close, CloseCode, Data, Fin, Open, decode

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
    peripheral.receive_data(Open(2, 97, 4096).encode(), 0.0)
    [close] = peripheral.data_to_send(0.0)
    segment = decode(close)
    assert isinstance(segment, Close) and segment.code == CloseCode.VERSION
    event = peripheral.next_event()
    assert isinstance(event, LinkClosed)
    assert "version 2" in event.reason and "version 1" in event.reason


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
