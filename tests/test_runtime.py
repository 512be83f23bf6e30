"""The agent runtime in-process: batching, urgent writes, restarts, clean stop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.home import Home
from agent.plugin_api import FieldSpec, Sensor, SensorConfig, Value
from agent.plugins import ConfiguredSensor
from agent.readings import decode_reading_batch
from agent.runtime.agent import Agent
from agent.runtime.configure import configure_sensors
from agent.store.log_store import LogStore

from .conftest import seeded_identity

ME = seeded_identity(5)


class Counter(Sensor):
    fields = {"n": FieldSpec(resolution=1)}

    def __init__(self, config: SensorConfig, context) -> None:
        super().__init__(config, context)
        self.n = 0

    def sample(self) -> Mapping[str, Value]:
        self.n += 1
        return {"n": self.n}


class Alarm(Sensor):
    """Emits one urgent reading, then idles."""

    def run(self) -> None:
        self.context.emit({"alarm": True}, urgent=True)
        self.context.stopping.wait()


class Flaky(Sensor):
    starts = 0

    def open(self) -> None:
        type(self).starts += 1
        raise OSError("sensor unplugged")


def make_agent(tmp_path: Path, config_text: str, sensors: list[ConfiguredSensor]) -> Agent:
    home = Home(tmp_path)
    return Agent(home, parse_config(config_text), ME, sensors)


async def run_until(agent: Agent, condition, timeout: float = 20.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


def configured(name: str, cls: type[Sensor], interval: float = 0.01) -> ConfiguredSensor:
    return ConfiguredSensor("test", cls, SensorConfig(name=name, interval=interval), 0)


@pytest.mark.slow
async def test_readings_are_batched_into_few_entries(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "[log]\nflush_interval = 0.2\n", [configured("count", Counter)])
    await run_until(agent, lambda: agent.readings.stored >= 100)
    with LogStore(tmp_path / "log.db") as store:
        entries = list(store.by_time("readings/count"))
        numbers = [r.values["n"] for e in entries for r in decode_reading_batch(e.body)]
        descriptions = list(store.documents.ids("_sensors"))
    assert descriptions == [f"readings/count@{ME.node_id}"]  # described once, not per flush
    assert numbers == list(range(1, len(numbers) + 1))  # every reading, in order, once
    assert len(entries) < len(numbers) / 5  # one signature covers many readings


async def test_an_urgent_reading_is_written_before_the_flush(tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        "[log]\nflush_interval = 3600\n",
        [configured("count", Counter), configured("door", Alarm)],
    )
    await run_until(agent, lambda: agent.readings.entries_stored >= 1)
    with LogStore(tmp_path / "log.db") as store:
        written = [e.collection for _, e in store.changes_since(0)]
    # the door's reading (with its description) was written at once; the counter waits
    assert written[:2] == ["_sensors", "readings/door"]
    assert "readings/count" not in written[:2]


async def test_stopping_writes_what_is_pending(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "[log]\nflush_interval = 3600\n", [configured("count", Counter)])
    runner = agent.runners[0]
    await run_until(agent, lambda: runner.state.readings >= 20)
    with LogStore(tmp_path / "log.db") as store:
        stored = sum(len(decode_reading_batch(e.body)) for e in store.by_time("readings/count"))
    assert stored == runner.state.readings and stored >= 20


async def test_a_failing_sensor_is_restarted_and_reported_without_stopping_others(
    tmp_path: Path,
) -> None:
    import agent.runtime.sensors as sensors_module

    original = sensors_module.BACKOFF_START_S
    sensors_module.BACKOFF_START_S = 0.05
    try:
        agent = make_agent(
            tmp_path,
            "[log]\nflush_interval = 0.1\n",
            [configured("flaky", Flaky), configured("count", Counter)],
        )
        flaky = agent.runners[0]
        await run_until(agent, lambda: flaky.state.restarts >= 2 and agent.readings.stored >= 10)
    finally:
        sensors_module.BACKOFF_START_S = original
    assert Flaky.starts >= 3
    assert flaky.state.last_error == "OSError: sensor unplugged"
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "stopped"
    assert status["sensors"][0]["last_error"] == "OSError: sensor unplugged"


@pytest.mark.slow
async def test_agent_status_snapshot(tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        "",
        configure_sensors(parse_config('[[sensors.sim]]\nname = "climate"\ninterval = 0.05\n')),
    )
    await run_until(agent, lambda: agent.readings.stored >= 3)
    status = agent.status()
    assert status["node_id"] == str(ME.node_id)
    assert status["sensors"][0]["name"] == "climate" and status["log"]["readings_stored"] >= 3
    assert set(status["sensors"][0]["latest"]) == {"temperature", "humidity"}
    assert threading.active_count() < 10  # sensor and writer threads are gone
