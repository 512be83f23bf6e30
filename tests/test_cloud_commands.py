"""Commands from the cloud end to end, real processes: Mosquitto, ``lichen cloud``,
a board ``lichen run``, ``lichen cloud command`` and ``lichen bundle``.

* ``lichen cloud command set sensors.climate.interval=1`` reaches the running
  board on its ack topic: the sim sensor's readings arrive at the new pace
  (checked from the board's log) without a restart of the agent, the setting
  is kept in ``HOME/overrides.toml`` (``lichen.toml`` untouched), and the board's
  result comes back to the cloud (``lichen cloud command status``).
* The same command delivered again by bundle is executed once.
* A command that expired before it arrived (by bundle), and one signed by a
  cloud the board does not accept, are refused and recorded with the reason.
* Restarted, the board keeps the interval the command set.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cloud_feed import COMMAND_RESULTS_COLLECTION
from agent.readings import decode_reading_batch
from agent.store.log_store import LogStore

from .conftest import run_lichen
from .helpers.agents import agent_state, start, stop, wait_for
from .helpers.broker import Broker
from .helpers.cloud import make_cloud_home, start_cloud
from .test_time_beacons import own_entries

pytestmark = pytest.mark.slow

FLEET = "test"


def board_config(broker: Broker, cloud: str) -> str:
    return (
        '[node]\nname = "board"\nboard = "sim"\n\n[gpio]\npin_factory = "mock"\n'
        f'\n[retention]\nack_from = ["{cloud}"]\n'
        f'\n[[uplinks.mqtt]]\nname = "cloud"\nbroker = "{broker.url}"\nfleet = "{FLEET}"\n'
        "reconnect_max = 1.0\n"
        '\n[[sensors.sim]]\nname = "climate"\nkind = "climate"\ninterval = 0.2\n'
    )


def reading_times(home: Path, after_ms: int = 0) -> list[int]:
    """The times of the board's climate readings after ``after_ms``, in order."""
    times = [
        r.ts_ms for e in own_entries(home, "readings/climate") for r in decode_reading_batch(e.body)
    ]
    return sorted(t for t in times if t > after_ms)


def pace(times: list[int]) -> float:
    """The median time between consecutive readings, in seconds."""
    return statistics.median(b - a for a, b in zip(times, times[1:], strict=False)) / 1000


def results(home: Path) -> list[dict[str, Any]]:
    return [dict(e.body) | {"doc": e.doc_id} for e in own_entries(home, COMMAND_RESULTS_COLLECTION)]


def issue(cloud_home: Path, *args: str) -> dict[str, Any]:
    out = run_lichen("cloud", "command", "set", "--json", *args, home=cloud_home)
    return dict(json.loads(out.stdout))


def carry(cloud_home: Path, board: Path, name: str) -> None:
    """The cloud's commands by bundle: exported from its home, imported on the board."""
    bundle = cloud_home.parent / f"{name}.lcb"
    run_lichen("bundle", "export", "--collections", "_commands", str(bundle), home=cloud_home)
    run_lichen("bundle", "import", str(bundle), home=board)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    stop(running)


def test_a_command_changes_a_running_sensor_once_and_bad_ones_are_refused(
    tmp_path: Path, mosquitto: Broker, processes: list[subprocess.Popen[str]]
) -> None:
    board = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "board", home=board)
    me = run_lichen("id", home=board).stdout.strip()
    cloud_home = tmp_path / "cloud"
    cloud = make_cloud_home(cloud_home, f'broker = "{mosquitto.url}"\n', trust=[me])
    config_text = board_config(mosquitto, str(cloud.node_id))
    (board / "lichen.toml").write_text(config_text)
    log = board / "agent.log"

    with start_cloud(cloud_home):
        agent = start(board)
        processes.append(agent)
        wait_for("readings at 0.2 s", lambda: len(reading_times(board)) > 10, log=log,
                 process=agent)  # fmt: skip
        assert abs(pace(reading_times(board)) - 0.2) < 0.05

        sent = issue(cloud_home, "sensors.climate.interval=1.0", "--to", me)
        (result,) = wait_for("the board's result", lambda: results(board), log=log, process=agent)
        assert result["outcome"] == "executed" and result["id"] == sent["id"], result
        assert result["doc"] == f"{cloud.node_id}/{sent['seq']}"
        # readings at the new pace, in the same agent process
        changed = result["at_ms"] + 1_500
        wait_for("six readings at the new pace", lambda: len(reading_times(board, changed)) >= 6,
                 timeout=30, log=log, process=agent)  # fmt: skip
        assert abs(pace(reading_times(board, changed)) - 1.0) < 0.1, reading_times(board, changed)
        assert agent.poll() is None
        overrides = (board / "overrides.toml").read_text()
        assert "[sensors.climate]\ninterval = 1.0" in overrides, overrides
        assert (board / "lichen.toml").read_text() == config_text
        # the result comes back to the cloud
        status = wait_for(
            "the result at the cloud",
            lambda: (s := json.loads(run_lichen("cloud", "command", "status", sent["id"],
                                                "--json", home=cloud_home).stdout))
            ["commands"][0]["boards"][me] and s,
            log=log,
        )  # fmt: skip
        assert status["commands"][0]["boards"][me]["outcome"] == "executed"

        # the same command again, by bundle: stored once, executed once
        carry(cloud_home, board, "again")
        wait_for("the bundle's entries looked at", lambda: (agent_state(board) or {})
                 .get("commands", {}).get("counts", {}).get("executed") == 1)  # fmt: skip

    # the role is stopped: what follows reaches the board by bundle only
    expired = issue(cloud_home, "sensors.climate.interval=0.5", "--to", me, "--ttl", "1s")
    wait_for("the command to expire", lambda: time.time_ns() // 1_000_000 > expired["expires_ms"])
    stranger = tmp_path / "stranger"
    make_cloud_home(stranger, trust=[me])
    LogStore(stranger / "log.db").close()
    forged = issue(stranger, "sensors.climate.interval=0.1", "--to", me)
    carry(cloud_home, board, "expired")
    carry(stranger, board, "forged")

    def by_id(ident: str) -> dict[str, Any] | None:
        return next((r for r in results(board) if r["id"] == ident), None)

    wait_for("both refusals", lambda: by_id(expired["id"]) and by_id(forged["id"]), log=log)
    late, fake = by_id(expired["id"]), by_id(forged["id"])
    assert late is not None and fake is not None
    assert late["outcome"] == "refused" and late["reason"] == "expired", late
    assert fake["outcome"] == "refused" and fake["reason"] == "untrusted", fake
    assert len(results(board)) == 3  # the first, executed once; the two refusals
    assert log.read_text().count("sensor reconfigured") == 1

    def counted() -> tuple[int, int, int]:
        counts = (agent_state(board) or {})["commands"]["counts"]
        return counts["executed"], counts["expired"], counts["untrusted"]

    # the status snapshot is written on its own beat, after the results are stored
    wait_for("the status to count the refusals", lambda: counted() == (1, 1, 1), log=log)
    assert counted() == (1, 1, 1)

    # restarted: the interval the command set still holds (from overrides.toml)
    stop(processes)
    processes.clear()
    restarted = time.time_ns() // 1_000_000 + 1_500
    processes.append(start(board))
    wait_for("readings after the restart", lambda: len(reading_times(board, restarted)) >= 5,
             log=log)  # fmt: skip
    assert abs(pace(reading_times(board, restarted)) - 1.0) < 0.1
    assert len(results(board)) == 3  # nothing acted on twice at start
