"""Two real `lichen run` nodes sync over BLE when one of them uses the bluez back
end — bleak dialling, or bluezero advertising and accepting — against the
BlueZ D-Bus stand-in (a private dbus-daemon and an ``org.bluez`` whose adapter
is a Bumble host); the other node is a Bumble host on a controller of the
stand-in's emulated radio. Each node holds entries the other lacks; both
logs pass `lichen log verify` afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lichen_ble.tests.bluez import Bus, start_bluez, start_bus

from .conftest import run_lichen
from .helpers.agents import free_port, make_nodes, node_id, start, stop, wait_for
from .test_ble_processes import fill, held_of

pytestmark = pytest.mark.slow

ENTRIES = 60


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    pytest.importorskip("bleak")
    pytest.importorskip("bluezero")
    started = start_bus()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", started.address)  # the nodes' system bus
    try:
        yield started
    finally:
        started.stop()


def add_ble(home: Path, **keys: str | bool) -> None:
    lines = ["", "[[transports.ble]]", 'name = "ble"']
    for key, value in keys.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'
        lines.append(f"{key} = {shown}")
    with (home / "lichen.toml").open("a") as f:
        f.write("\n".join(lines) + "\n")


def sync_both_ways(tmp_path: Path, bus: Bus, *, board: str, phone: str) -> None:
    """``board`` ("bumble", or a BlueZ adapter "hciN") listens; ``phone`` dials it."""
    homes = make_nodes(tmp_path, 2, board="sim")
    port = free_port()

    def radio(name: str) -> dict[str, str]:
        if name == "bumble":
            return {"hci": f"tcp-client:127.0.0.1:{port}"}
        return {"backend": "bluez", "adapter": name}

    add_ble(homes[0], **radio(board), scan=False)
    add_ble(homes[1], **radio(phone), listen=False)
    sync(tmp_path, bus, homes, port, adapters=len({board, phone} - {"bumble"}))


def sync(tmp_path: Path, bus: Bus, homes: list[Path], port: int, adapters: int) -> None:
    board, phone = homes
    asyncio.run(fill(board, ENTRIES))
    asyncio.run(fill(phone, ENTRIES))
    board_id, phone_id = node_id(board), node_id(phone)
    stand_in = start_bluez(
        bus, adapters=adapters, serve=[f"tcp-server:127.0.0.1:{port}"], log=tmp_path / "bluez.log"
    )
    processes = []
    try:
        processes.append(start(board, "--listen", "ble:"))
        processes.append(start(phone, "--peer", f"ble:{board_id}"))
        wait_for(
            "both nodes to hold each other's entries",
            lambda: held_of(phone, board_id) >= ENTRIES and held_of(board, phone_id) >= ENTRIES,
            timeout=60, log=phone / "agent.log", process=processes[1],
        )  # fmt: skip
        configs = [(home / "lichen.toml").read_text() for home in homes]
        if 'backend = "bluez"' in configs[1] and "hci =" in configs[0]:
            # BlueZ shares the adapter: lichen ble scan works beside the running agent
            # (of a Bumble board, which advertises while a link is up; a bluez one
            # takes one central and goes quiet until its link ends)
            def listed() -> list[dict[str, object]] | None:
                result = run_lichen("ble", "scan", "--json", "--seconds", "1", home=phone)
                return json.loads(result.stdout) or None

            [row] = wait_for("the board in lichen ble scan", listed, timeout=20)
            assert (row["node"], row["rssi"], row["trusted"]) == (board_id, -50, True)
    finally:
        stop(processes)
        stand_in.stop()
    for home in (board, phone):
        result = run_lichen("log", "verify", home=home, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    for home in homes:
        config = (home / "lichen.toml").read_text()
        if 'backend = "bluez"' in config:
            adapter = config.split('adapter = "')[1].split('"')[0]
            assert f"BLE on BlueZ {adapter}" in (home / "agent.log").read_text()


def test_a_bleak_node_dials_a_bumble_node_and_both_sync(tmp_path: Path, bus: Bus) -> None:
    sync_both_ways(tmp_path, bus, board="bumble", phone="hci0")


def test_a_bumble_node_dials_a_bluezero_node_and_both_sync(tmp_path: Path, bus: Bus) -> None:
    sync_both_ways(tmp_path, bus, board="hci0", phone="bumble")


def test_a_bleak_node_dials_a_bluezero_node_on_another_adapter_and_both_sync(
    tmp_path: Path, bus: Bus
) -> None:
    sync_both_ways(tmp_path, bus, board="hci1", phone="hci0")
