"""``lichen ble scan``'s radio side and its rows, over an emulated radio: each
node heard with its RSSI, room, and whether it holds anything new."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agent.command_api import NodeView
from agent.identity import Identity
from lichen_ble.cli import _row, _scan

from .helpers import local_link, make_transport

BOARD, ME = Identity(bytes([1]) * 32), Identity(bytes([2]) * 32)
BOARD_DIGEST = "aa" * 8


def view(digest: str, *, trusted: bool = True, synced: str | None = None) -> NodeView:
    board = str(BOARD.node_id)
    return NodeView(
        node_id=str(ME.node_id), home=None, config_file="lichen.toml",  # type: ignore[arg-type]
        heads_digest=digest, trusted=frozenset({board} if trusted else ()),
        synced={board: synced} if synced else {},
    )  # fmt: skip


async def heard_until_found(hci: str | None, adapter: str | None = None) -> Any:
    """Scan in short rounds until the board is heard (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await _scan(hci or "", ME.node_id.key, 0.5, adapter=adapter)
        if found:
            return found
    raise AssertionError("the board was never heard")


async def scan_rows(hci: str | None, board_hci: str | None, **board: Any) -> None:
    """The board advertises; a scan hears it; its rows say what it holds."""
    advertiser = make_transport(board_hci, 1, digest=BOARD_DIGEST, scan=False, **board)
    await advertiser.start()
    try:
        [nearby] = await heard_until_found(hci, adapter=None if hci else "hci0")
    finally:
        await advertiser.close()
    row = _row(nearby, view("bb" * 8))
    assert row["node"] == str(BOARD.node_id) and row["trusted"] is True
    assert row["rssi"] == -50 and row["digest"] == "aaaaaaaa"
    assert row["new"] == "has new"  # never synced with it, other heads
    assert _row(nearby, view(BOARD_DIGEST))["new"] == "same heads"
    # unchanged since the last sync, and ours differ: it lacks what we hold
    assert _row(nearby, view("bb" * 8, synced=BOARD_DIGEST))["new"] == "lacks ours"
    assert _row(nearby, view("bb" * 8, synced="cc" * 8))["new"] == "has new"
    stranger = _row(nearby, view("bb" * 8, trusted=False))
    assert stranger["trusted"] is False and stranger["node"].endswith("…")
    assert str(BOARD.node_id).startswith(stranger["node"][:-1])


@pytest.mark.slow
async def test_a_scan_on_a_bumble_radio_lists_a_board_and_what_it_holds() -> None:
    hci = local_link()
    await scan_rows(hci, hci)
