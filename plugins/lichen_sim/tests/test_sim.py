"""lichen_sim, configured like a user would and run by a real agent: readings in the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.home import Home
from agent.identity import Identity
from agent.readings import decode_reading_batch
from agent.runtime.agent import Agent
from agent.runtime.configure import configure_sensors
from agent.store.log_store import LogStore

CONFIG = """
[log]
flush_interval = 0.1

[[sensors.sim]]
name = "climate"
kind = "climate"
interval = 0.01
seed = 1
period = 10.0

[[sensors.sim]]
name = "door"
kind = "door"
interval = 0.01
mean_event_interval = 0.05
seed = 2

[[sensors.sim]]
name = "rain"
kind = "counter"
interval = 0.01
rate = 50.0
seed = 3
"""


@pytest.mark.slow
async def test_simulated_sensors_write_plausible_readings(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    agent = Agent(Home(tmp_path), config, Identity.generate(), configure_sensors(config))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(30):
        while not all(r.state.readings >= 30 for r in agent.runners):
            await asyncio.sleep(0.05)
    stop.set()
    await task

    with LogStore(tmp_path / "log.db") as store:

        def readings(collection: str) -> list[dict]:  # type: ignore[type-arg]
            return [
                r.values for e in store.by_time(collection) for r in decode_reading_batch(e.body)
            ]

        climate = readings("readings/climate")
        assert len(climate) >= 30
        assert all(5.0 < r["temperature"] < 30.0 and 0 <= r["humidity"] <= 100 for r in climate)
        assert len({r["temperature"] for r in climate}) > 5  # it varies

        door = readings("readings/door")
        assert len(door) >= 30 and {r["open"] for r in door} == {True, False}
        assert all(a["open"] != b["open"] for a, b in zip(door, door[1:]))  # only changes

        counts = [r["count"] for r in readings("readings/rain")]
        assert counts == sorted(counts) and counts[-1] > counts[0]
        described = store.documents.get("_sensors", f"readings/climate@{agent.identity.node_id}")
        assert described is not None
        assert described.body["fields"]["temperature"] == {
            "unit": "°C",
            "resolution": 0.01,
            "device_class": "temperature",
        }
        assert described.body["plugin"] == "sim" and described.body["interval"] == 0.01
