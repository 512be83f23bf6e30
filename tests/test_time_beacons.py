"""Time beacons end to end, real processes: Mosquitto, ``lichen cloud`` and a board
``lichen run`` whose wall clock is ten years in the past (``LICHEN_TEST_WALL_OFFSET_MS``).

* The cloud's beacon, which comes with its acknowledgements on the ack topic,
  moves the board's clock forward: one ``_clock`` record (before, after, the
  cloud and the beacon), and the readings stamped afterwards carry today's time.
* Restarted in the same boot, the board keeps its corrected clock (no second
  correction needed).
* A beacon signed by a stranger on the ack topic is refused and stored nowhere;
  a beacon of the accepted cloud that arrives by bundle into a board whose clock
  is right (behind it) changes nothing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.beacon import beacon_body
from agent.clock import physical_ms
from agent.cloud_feed import BEACON_DOC_ID, CLOCK_COLLECTION, TIME_COLLECTION
from agent.entry import Entry, decode_entry
from agent.identity import Identity, NodeId
from agent.store.log_store import LogStore
from agent.uplink.wire import Topics, encode_entry_batch

from .conftest import run_lichen
from .helpers.agents import agent_state, start, stop, wait_for
from .helpers.broker import Broker
from .helpers.cloud import Feed, TestClient, make_cloud_home, start_cloud

pytestmark = pytest.mark.slow

FLEET = "test"
TEN_YEARS_MS = 10 * 365 * 86_400_000


def board_config(broker: Broker, cloud: str) -> str:
    return (
        '[node]\nname = "board"\nboard = "sim"\n\n[gpio]\npin_factory = "mock"\n'
        f'\n[retention]\nack_from = ["{cloud}"]\n'
        f'\n[[uplinks.mqtt]]\nname = "cloud"\nbroker = "{broker.url}"\nfleet = "{FLEET}"\n'
        "reconnect_max = 1.0\n"
        '\n[[sensors.sim]]\nname = "climate"\nkind = "climate"\ninterval = 0.2\n'
    )


def own_entries(home: Path, collection: str) -> list[Entry]:
    """This node's entries of ``collection``, oldest first, read from its log."""
    me = NodeId.parse(run_lichen("id", home=home).stdout.strip()).key
    store = LogStore(home / "log.db")
    try:
        rows = store.connection.execute(
            "SELECT e.raw FROM entries e JOIN collections c ON c.id = e.collection "
            "JOIN feeds f ON f.id = e.feed WHERE c.name = ? AND f.author = ? ORDER BY e.seq",
            (collection, me),
        ).fetchall()
    finally:
        store.close()
    return [decode_entry(bytes(raw), strict=False, max_size=len(raw)) for (raw,) in rows]


def clock_of(home: Path, pid: int | None = None) -> dict[str, Any]:
    """The ``time`` section of the agent's status (of process ``pid``'s, if given)."""
    state = agent_state(home) or {}
    if pid is not None and state.get("pid") != pid:
        return {}
    return dict(state.get("time") or {})


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    stop(running)


def test_a_beacon_corrects_a_board_ten_years_behind_and_a_forged_one_is_refused(
    tmp_path: Path, mosquitto: Broker, processes: list[subprocess.Popen[str]]
) -> None:
    board = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "board", home=board)
    me = run_lichen("id", home=board).stdout.strip()
    cloud_home = tmp_path / "cloud"
    cloud = make_cloud_home(
        cloud_home, f'broker = "{mosquitto.url}"\nbeacon_interval = 3600\n', trust=[me]
    )
    (board / "lichen.toml").write_text(board_config(mosquitto, str(cloud.node_id)))
    past = {"LICHEN_TEST_WALL_OFFSET_MS": str(-TEN_YEARS_MS)}

    with start_cloud(cloud_home):
        agent = start(board, env=past)
        processes.append(agent)
        # in the past at first: the first readings are stamped ten years ago
        wait_for("the first readings", lambda: own_entries(board, "readings/climate"),
                 log=board / "agent.log", process=agent)  # fmt: skip
        (record,) = wait_for(
            "a correction of the clock",
            lambda: own_entries(board, CLOCK_COLLECTION),
            log=board / "agent.log",
            process=agent,
        )
        now = time.time_ns() // 1_000_000
        body = record.body
        assert body["first"] is True
        assert abs(body["before_ms"] - (now - TEN_YEARS_MS)) < 60_000, body
        assert abs(body["after_ms"] - now) < 10_000, body
        assert body["step_ms"] == body["after_ms"] - body["before_ms"]
        assert body["source"]["cloud"] == str(cloud.node_id)
        assert body["source"]["age_ms"] < 60_000
        # the readings stamped after it carry today's time
        wait_for(
            "readings at today's time",
            lambda: any(
                abs(physical_ms(e.ts) - time.time_ns() // 1_000_000) < 30_000
                for e in own_entries(board, "readings/climate")
            ),
            log=board / "agent.log",
        )
        shown = wait_for("the status", lambda: clock_of(board).get("anchored") and clock_of(board))
        assert shown["beacons"]["corrected"] == 1 and shown["rtc"] is False
        assert abs(shown["now_ms"] - time.time_ns() // 1_000_000) < 30_000

        # a stranger's beacon, ten years ahead, on the board's ack topic: refused
        rogue = Feed(Identity.generate())
        forged = rogue.add(TIME_COLLECTION, beacon_body(now + TEN_YEARS_MS), doc_id=BEACON_DOC_ID)
        client = TestClient(mosquitto.port)
        try:
            client.publish(Topics(FLEET, me).ack, encode_entry_batch([forged.raw]))
            wait_for(
                "the forged beacon's refusal",
                lambda: (
                    ((agent_state(board) or {}).get("uplink") or {})
                    .get("refused", {})
                    .get("untrusted_cloud")
                ),
                log=board / "agent.log",
            )
        finally:
            client.close()
        assert len(own_entries(board, CLOCK_COLLECTION)) == 1
        assert clock_of(board)["now_ms"] < time.time_ns() // 1_000_000 + 60_000

        # restarted in the same boot, still ten years behind: the clock stays right
        stop(processes)
        processes.clear()
        restarted_at = time.time_ns() // 1_000_000
        again = start(board, env=past)
        processes.append(again)
        wait_for(
            "a beacon after the restart",
            lambda: sum(
                clock_of(board, again.pid).get("beacons", {}).get(k, 0)
                for k in ("in_step", "behind")
            ),
            log=board / "agent.log",
        )
        assert clock_of(board, again.pid)["beacons"]["corrected"] == 0
        assert len(own_entries(board, CLOCK_COLLECTION)) == 1
        # and runs on: a reading stamped two seconds after the restart or later
        wait_for(
            "readings that follow the corrected clock",
            lambda: any(physical_ms(e.ts) > restarted_at + 2_000
                        for e in own_entries(board, "readings/climate")),
            log=board / "agent.log",
        )  # fmt: skip
