"""The board's side of time beacons (agent.runtime.timekeeper): whose beacons count,
newest first, what is recorded, and the anchor kept across restarts of one boot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.beacon import ClockBounds, beacon_body
from agent.cloud_feed import BEACON_DOC_ID, CLOCK_COLLECTION, TIME_COLLECTION
from agent.config import parse_config
from agent.entry import Entry
from agent.errors import ConfigError
from agent.identity import Identity
from agent.runtime import timekeeper as tk
from agent.runtime.timekeeper import Timekeeper

from .helpers.cloud import Feed

NOW = 1_795_000_000_000
PAST = 5_000_000


class Clocks:
    def __init__(self) -> None:
        self.system = PAST
        self.mono = 1_000_000

    def keeper(self, state: Path, rtc: bool = False) -> Timekeeper:
        return Timekeeper(
            ClockBounds(),
            rtc=rtc,
            state_file=state,
            system_ms=lambda: self.system,
            monotonic_ms=lambda: self.mono,
        )


def beacon(cloud: Feed, wall: int) -> Entry:
    return cloud.add(TIME_COLLECTION, beacon_body(wall), doc_id=BEACON_DOC_ID)


def test_only_accepted_clouds_newest_first(tmp_path: Path) -> None:
    clocks = Clocks()
    keeper = clocks.keeper(tmp_path / "clock.json")
    cloud, stranger = Feed(Identity.generate()), Feed(Identity.generate())
    entries = [
        (beacon(stranger, NOW + 10**9), clocks.mono),
        (beacon(cloud, NOW - 5_000), clocks.mono),
        (beacon(cloud, NOW), clocks.mono - 200),
        (cloud.add(TIME_COLLECTION, {"wall_ms": "soon"}, doc_id=BEACON_DOC_ID), clocks.mono),
    ]
    (record,) = keeper.consider(entries, {cloud.author}, lambda: clocks.system)
    assert record.collection == CLOCK_COLLECTION and record.doc_id is None
    assert record.body["after_ms"] == NOW + 200 and record.body["before_ms"] == PAST
    assert record.body["source"] == {"cloud": cloud.node, "seq": 2, "beacon_ms": NOW,
                                     "age_ms": 200}  # fmt: skip
    assert keeper.outcomes["corrected"] == 1 and keeper.outcomes["older"] == 1
    assert keeper.invalid == 1
    assert keeper.wall() == NOW + 200
    clocks.mono += 1_000
    assert keeper.wall() == NOW + 1_200


def test_the_anchor_survives_a_restart_in_the_same_boot_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr(tk, "_BOOT_ID", boot)
    clocks = Clocks()
    state = tmp_path / "state" / "clock.json"
    cloud = Feed(Identity.generate())
    clocks.keeper(state).consider([(beacon(cloud, NOW), clocks.mono)], {cloud.author},
                                  lambda: clocks.system)  # fmt: skip
    assert json.loads(state.read_text())["boot_id"] == "boot-1"
    clocks.mono += 5_000
    again = clocks.keeper(state)
    assert again.wall() == NOW + 5_000 and again.status()["anchored"]
    # a second beacon no later than the first is older, also after the restart
    assert not again.consider([(beacon(cloud, NOW), clocks.mono)], {cloud.author},
                              again.wall)  # fmt: skip
    assert again.outcomes["older"] == 1
    boot.write_text("boot-2\n")  # rebooted: monotonic time started again
    assert clocks.keeper(state).wall() == PAST
    state.write_text("{not json")
    assert clocks.keeper(state).wall() == PAST  # unreadable: ignored, said in the log


def test_a_board_with_a_real_time_clock_keeps_its_own(tmp_path: Path) -> None:
    clocks = Clocks()
    keeper = clocks.keeper(tmp_path / "clock.json", rtc=True)
    cloud = Feed(Identity.generate())
    assert not keeper.consider([(beacon(cloud, NOW), clocks.mono)], {cloud.author},
                               lambda: clocks.system)  # fmt: skip
    assert keeper.outcomes["rtc"] == 1 and keeper.wall() == PAST


def test_the_clock_table_is_checked() -> None:
    config = parse_config('[clock]\nrtc = false\nmax_forward = "2h"\nmin_step = 0.5\n')
    assert config.clock.rtc is False and config.clock.max_forward_ms == 7_200_000
    assert parse_config("").clock.rtc is None
    with pytest.raises(ConfigError, match="max_forward"):
        parse_config('[clock]\nmax_forward = "soon"\n')
    with pytest.raises(ConfigError, match="max_age"):
        parse_config("[clock]\nmax_age = -1\n")
