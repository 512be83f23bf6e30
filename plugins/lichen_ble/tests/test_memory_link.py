"""The link core's asyncio shell over in-memory GATT connections shaped like a
slow radio: the transport conformance suite, clean and with loss."""

from __future__ import annotations

import dataclasses

import pytest

from agent.transport import BLE_GATT, check_transport
from lichen_ble import GattStream
from lichen_ble.memory import MemoryBearer, faults_of, gatt_pair

FAST = dataclasses.replace(BLE_GATT, rate=2_000_000.0, latency=0.002)


@pytest.mark.slow
async def test_link_streams_pass_the_conformance_suite_on_a_fast_ble_profile() -> None:
    report = await check_transport(lambda: gatt_pair(FAST), large=200_000)
    assert not report.skipped and len(report.passed) == 13, report


@pytest.mark.slow
async def test_link_streams_pass_the_conformance_suite_losing_and_duplicating_values() -> None:
    pairs: list[tuple[GattStream, GattStream]] = []

    async def make_pair() -> tuple[GattStream, GattStream]:
        pair = await gatt_pair(FAST, loss=0.05, duplicate=0.05, seed=len(pairs))
        pairs.append(pair)
        return pair

    report = await check_transport(make_pair, large=100_000)
    assert len(report.passed) == 13, report
    lost = sum(faults_of(a).lost for a, _ in pairs)
    duplicated = sum(faults_of(a).duplicated for a, _ in pairs)
    assert lost > 20 and duplicated > 20  # the faults happened, and were survived


@pytest.mark.slow
async def test_link_streams_pass_the_conformance_suite_on_the_ble_gatt_profile() -> None:
    report = await check_transport(lambda: gatt_pair(BLE_GATT), large=16_384)
    assert len(report.passed) == 13, report


@pytest.mark.slow
async def test_an_over_long_value_is_dropped_and_the_link_recovers_nothing_silently() -> None:
    central, peripheral = await gatt_pair(FAST)
    bearer = central.bearer
    assert isinstance(bearer, MemoryBearer)
    bearer.max_value = 100  # the stack now drops anything longer, as Bumble does past 512
    await central.send(b"x" * 1000)
    await central.send_eof()
    # nothing longer than 100 bytes arrives, so the peer sees no data and no end:
    # the link gives up with a reason instead of delivering anything wrong
    with pytest.raises(Exception, match=r"acknowledged nothing|connection ended"):
        while await peripheral.receive():
            raise AssertionError("bytes arrived through a dropped value")
    assert faults_of(central).too_long > 0
