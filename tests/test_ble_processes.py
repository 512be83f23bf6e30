"""Two real `lichen run` nodes sync over BLE through emulated controllers served
by a third process (`lichen ble controllers`), as a user would start them;
the board is killed mid-sync, restarted, and the sync resumes to completion.
Both logs then pass `lichen log verify`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from agent.identity import load_identity

from .conftest import LICHEN, run_lichen
from .helpers.agents import can_connect, free_port, make_nodes, node_id, start, stop, wait_for
from .helpers.nodes import open_node

pytestmark = pytest.mark.slow

ENTRIES = 1200  # about 250 B each: 300 kB, some 15 s at the relay's 20 kB/s


def add_ble(home: Path, port: int, **keys: bool) -> None:
    lines = ["", "[[transports.ble]]", 'name = "ble"', f'hci = "tcp-client:127.0.0.1:{port}"']
    lines += [f"{k} = {'true' if v else 'false'}" for k, v in keys.items()]
    with (home / "lichen.toml").open("a") as f:
        f.write("\n".join(lines) + "\n")


async def fill(home: Path, n: int) -> None:
    node = await open_node(home / "log.db", load_identity(home / "identity.key"))
    try:
        await node.append(n, collection="readings/backlog", size=120)
    finally:
        await node.close()


def held_of(home: Path, author: str) -> int:
    """How many of ``author``'s entries ``home`` holds (its SQLite file, read)."""
    import sqlite3

    from agent.identity import NodeId

    with sqlite3.connect(f"file:{home / 'log.db'}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute(
            "SELECT count(*) FROM entries e JOIN feeds f ON f.id = e.feed WHERE f.author = ?",
            (NodeId.parse(author).key,),
        ).fetchone()
    return int(row[0])


def test_two_nodes_sync_over_emulated_ble_and_resume_after_a_cut(tmp_path: Path) -> None:
    board, phone = make_nodes(tmp_path, 2, board="sim")
    p_board, p_phone = free_port(), free_port()
    add_ble(board, p_board, scan=False)
    add_ble(phone, p_phone, listen=False)
    asyncio.run(fill(board, ENTRIES))
    board_id = node_id(board)
    relay_log = (tmp_path / "controllers.log").open("w")
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    relay = subprocess.Popen(
        [str(LICHEN), "ble", "controllers", f"tcp-server:127.0.0.1:{p_board}",
         f"tcp-server:127.0.0.1:{p_phone}", "--rate", "20000"],
        stdout=relay_log, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    processes: list[subprocess.Popen[str]] = [relay]
    try:
        wait_for("the controllers", lambda: can_connect(p_board) and can_connect(p_phone),
                 process=relay)  # fmt: skip
        board_run = start(board, "--listen", "ble:")
        phone_run = start(phone, "--peer", f"ble:{board_id}")
        processes += [board_run, phone_run]
        log = phone / "agent.log"
        got = wait_for(
            "the phone to hold part of the board's backlog",
            lambda: (n := held_of(phone, board_id)) >= 150 and n,
            timeout=90, log=log, process=phone_run,
        )  # fmt: skip
        assert got < ENTRIES, "the sync finished before the cut: nothing was cut mid-sync"
        board_run.send_signal(signal.SIGKILL)  # the board vanishes mid-sync
        board_run.wait()
        wait_for(
            "the phone to see the link drop",
            lambda: "session closed" in log.read_text(),
            timeout=60, log=log, process=phone_run,
        )  # fmt: skip
        cut_at = held_of(phone, board_id)
        assert cut_at < ENTRIES
        board_run = start(board, "--listen", "ble:")
        processes.append(board_run)
        wait_for(
            "the phone to hold the whole backlog after the restart",
            lambda: held_of(phone, board_id) >= ENTRIES,
            timeout=120, log=log, process=phone_run,
        )  # fmt: skip
    finally:
        stop(processes)
        relay_log.close()
    assert "host gone" in (tmp_path / "controllers.log").read_text()
    for home in (board, phone):
        result = run_lichen("log", "verify", home=home, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_lichen_ble_scan_lists_a_board_advertising_nearby(tmp_path: Path) -> None:
    board, phone = make_nodes(tmp_path, 2, board="sim")
    p_board, p_phone = free_port(), free_port()
    add_ble(board, p_board, scan=False)
    add_ble(phone, p_phone, listen=False)
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    relay = subprocess.Popen(
        [str(LICHEN), "ble", "controllers", f"tcp-server:127.0.0.1:{p_board}",
         f"tcp-server:127.0.0.1:{p_phone}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    processes: list[subprocess.Popen[str]] = [relay]  # type: ignore[list-item]
    try:
        wait_for("the controllers", lambda: can_connect(p_board) and can_connect(p_phone))
        processes.append(start(board, "--listen", "ble:"))
        board_id = node_id(board)

        def listed() -> list[dict[str, object]] | None:
            result = run_lichen("ble", "scan", "--json", "--seconds", "1.5", home=phone)
            rows: list[dict[str, object]] = json.loads(result.stdout)
            return rows or None

        [row] = wait_for("the board in lichen ble scan", listed, timeout=60)
        assert row["node"] == board_id and row["trusted"] is True
        assert row["rssi"] == -50 and row["room"] == 4 and row["new"] == "has new"
    finally:
        stop(processes)
    result = run_lichen("ble", "scan", "--seconds", "0.1", home=tmp_path / "nowhere", check=False)
    assert result.returncode == 1 and "is not a Lichen home" in result.stderr
