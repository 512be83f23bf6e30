"""One sans-IO convention: every protocol core takes bytes with receive_data, gives
events with next_event (or the one NEED_DATA), and bytes with data_to_send.

The annotated assignments below are the static check (mypy fails the lint if a
core stops satisfying its protocol); the tests run the cores through one
generic loop that knows only the convention."""

from __future__ import annotations

from typing import Any

from lichen_ble.link import GattLink, LinkEvent, Role
from lichen_serial import frames
from lichen_serial.frames import FrameDecoder
from lichen_serial.payloads import FrameEncoder, RawValue

from agent.bundle import BundleEnd, BundleEvent, BundleReader, BundleStart, BundleWriter
from agent.channel import HandshakeComplete, Message, SecureChannel
from agent.channel import events as channel_events
from agent.identity import Identity
from agent.sansio import NEED_DATA, Decoder, EventSource, SansIOCore
from agent.sync import DEFAULT_WINDOW, Credit, Hello, SyncConnection
from agent.sync import events as sync_events

ALICE, BOB = Identity(b"\x01" * 32), Identity(b"\x02" * 32)


def accept(_peer: object) -> None:
    return None


def sync_core() -> SansIOCore[sync_events.Event]:
    return SyncConnection()


def channel_core(identity: Identity, *, initiator: bool) -> SansIOCore[channel_events.Event]:
    return SecureChannel(identity, initiator=initiator, trust=accept)


def serial_core() -> Decoder[frames.Event]:
    return FrameDecoder()


def bundle_core() -> Decoder[BundleEvent]:
    return BundleReader(max_entry_size=1 << 16)


def ble_core() -> EventSource[LinkEvent]:
    return GattLink(Role.CENTRAL)


def pump(a: SansIOCore[Any], b: SansIOCore[Any]) -> tuple[list[Any], list[Any]]:
    """Move bytes both ways until neither side has more to say; every event each saw."""
    seen_a: list[Any] = []
    seen_b: list[Any] = []
    while True:
        moved = False
        for sender, receiver, events in ((a, b, seen_b), (b, a, seen_a)):
            data = sender.data_to_send()
            if data:
                moved = True
                receiver.receive_data(data)
            while (event := receiver.next_event()) is not NEED_DATA:
                events.append(event)
        if not moved:
            return seen_a, seen_b


def test_every_core_hands_out_the_same_need_data() -> None:
    fresh = [
        sync_core(),
        channel_core(BOB, initiator=False),
        serial_core(),
        ble_core(),
        bundle_core(),
    ]
    assert all(core.next_event() is NEED_DATA for core in fresh)
    assert repr(NEED_DATA) == "NEED_DATA"


def test_two_noise_channels_open_through_the_generic_loop() -> None:
    a, b = channel_core(ALICE, initiator=True), channel_core(BOB, initiator=False)
    seen_a, seen_b = pump(a, b)
    assert [type(e) for e in seen_a] == [type(e) for e in seen_b] == [HandshakeComplete]
    assert isinstance(a, SecureChannel)
    a.send(b"through the convention")
    assert pump(a, b)[1] == [Message(data=b"through the convention")]


def test_two_sync_connections_greet_through_the_generic_loop() -> None:
    a, b = sync_core(), sync_core()
    assert isinstance(a, SyncConnection) and isinstance(b, SyncConnection)
    for conn, me in ((a, ALICE), (b, BOB)):
        conn.send_all([Hello(node=me.node_id.key, role="board"), DEFAULT_WINDOW])
    seen_a, seen_b = pump(a, b)
    assert seen_a == [Hello(node=BOB.node_id.key, role="board"), DEFAULT_WINDOW]
    assert [type(e) for e in seen_b] == [Hello, Credit]
    assert a.data_to_send() == b""  # taken: nothing is sent twice


def test_the_serial_decoder_listens_the_same_way() -> None:
    decoder = serial_core()
    device = FrameEncoder(boot_id=1)
    decoder.receive_data(device.readings([RawValue(0, 7)]) + device.readings([RawValue(0, 8)]))
    got = []
    while (event := decoder.next_event()) is not NEED_DATA:
        got.append(event)
    assert [e.values[0].raw for e in got if isinstance(e, frames.Readings)] == [7, 8]


def test_the_bundle_reader_listens_the_same_way() -> None:
    writer = BundleWriter(ALICE.node_id.key, created_ms=0)
    writer.finish(ALICE.sign)
    reader = bundle_core()
    reader.receive_data(writer.data_to_send())
    reader.receive_data(b"")  # the file ended
    got = []
    while (event := reader.next_event()) is not NEED_DATA:
        got.append(event)
    assert [type(e) for e in got][:1] == [BundleStart] and isinstance(got[-1], BundleEnd)
