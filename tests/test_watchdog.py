"""The watchdog: a plugin call that hangs is shown as stuck, with how long; a
process-isolated instance that hangs is killed and restarted; anything a thread
instance raises — SystemExit included — restarts it and shows the cause; a
process-isolated plugin may print. In-process agents with plugins defined here,
and real `lichen run` processes with the fixture plugins."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import agent.runtime.sensors as sensors_module
from agent.config import parse_config
from agent.home import Home
from agent.plugin_api import Sensor, SensorConfig, Value
from agent.plugins import ConfiguredSensor
from agent.runtime.agent import Agent

from .conftest import seeded_identity
from .helpers.agent_process import FIXTURE_PLUGINS, running_agent
from .test_runtime import Counter
from .test_sensor_values import stored

ME = seeded_identity(6)


def configured(name: str, cls: type[Sensor], stuck_after: float = 60.0) -> ConfiguredSensor:
    config = SensorConfig(name=name, interval=0.02, stuck_after=stuck_after)
    return ConfiguredSensor("test", cls, config, 0)


@asynccontextmanager
async def running(tmp_path: Path, sensors: list[ConfiguredSensor]) -> AsyncIterator[Agent]:
    agent = Agent(Home(tmp_path), parse_config("[log]\nflush_interval = 0.1\n"), ME, sensors)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield agent
    finally:
        stop.set()
        await task


async def until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def sensor(agent: Agent, name: str) -> dict[str, Any]:
    return next(s for s in agent.status()["sensors"] if s["name"] == name)


@pytest.mark.parametrize("where", ["sample()", "open()"])
@pytest.mark.slow
async def test_a_call_that_hangs_is_shown_stuck_with_how_long(tmp_path: Path, where: str) -> None:
    gate = threading.Event()

    class Hangs(Counter):
        def open(self) -> None:
            if where == "open()":
                gate.wait(60)

        def sample(self) -> Mapping[str, Value]:
            if where == "sample()" and self.n == 2:
                gate.wait(60)
            return super().sample()

    async with running(
        tmp_path, [configured("hangs", Hangs, stuck_after=1.0), configured("count", Counter)]
    ) as agent:
        await until(lambda: (sensor(agent, "hangs")["stuck_for_s"] or 0) >= 1.5)
        shown = sensor(agent, "hangs")
        assert shown["state"] == "stuck" and shown["stuck_in"] == where, shown
        counted = sensor(agent, "count")["readings"]
        await until(lambda: sensor(agent, "count")["readings"] >= counted + 20)  # others go on
        assert sensor(agent, "hangs")["stuck_for_s"] > shown["stuck_for_s"]  # and it grows
        gate.set()  # the call returns: no longer stuck, readings flow again
        await until(lambda: sensor(agent, "hangs")["state"] == "running")
        await until(lambda: sensor(agent, "hangs")["readings"] >= 5)
        assert sensor(agent, "hangs")["stuck_in"] is None
        assert sensor(agent, "hangs")["restarts"] == 0


class Fatal(BaseException):
    """Not an Exception: what a plugin should never raise, but might."""


@pytest.mark.parametrize(
    ("raised", "shown"),
    [(SystemExit(3), "SystemExit: 3"), (Fatal("gone"), "Fatal: gone")],
)
async def test_a_base_exception_in_a_thread_instance_restarts_it_and_shows_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException, shown: str
) -> None:
    monkeypatch.setattr(sensors_module, "BACKOFF_START_S", 0.05)

    class Exits(Counter):
        def sample(self) -> Mapping[str, Value]:
            if self.n == 2:
                raise raised
            return super().sample()

    async with running(
        tmp_path, [configured("exits", Exits), configured("count", Counter)]
    ) as agent:
        await until(lambda: sensor(agent, "exits")["restarts"] >= 2)
        status = sensor(agent, "exits")
        assert status["last_error"] == shown
        assert sensor(agent, "count")["readings"] > 0
    assert sensor(agent, "exits")["readings"] >= 4  # two readings per life, lives go on


def process_config(home: Path, table: str) -> None:
    config = home / "lichen.toml"
    config.write_text(
        config.read_text().replace("flush_interval = 1.0", "flush_interval = 0.1")
        + '\n[[sensors.sim]]\nname = "good"\ninterval = 0.05\n\n'
        + table
    )


@pytest.mark.parametrize("hang_in", ["sample", "open"])
@pytest.mark.slow
def test_a_process_instance_that_hangs_is_killed_and_restarted(home: Path, hang_in: str) -> None:
    process_config(
        home,
        f'[[sensors.hanger]]\nname = "hanger"\ninterval = 0.05\nhang_in = "{hang_in}"\n'
        'isolation = "process"\nstuck_after = 1.0\n',
    )
    with running_agent(home, plugins=FIXTURE_PLUGINS) as agent:

        def hanger() -> dict[str, Any]:
            return agent.sensor("hanger") or {"restarts": 0, "last_error": None}

        agent.wait_for(lambda: hanger()["restarts"] >= 2, timeout=60)
        assert f"stuck in {hang_in}() for" in hanger()["last_error"], hanger()
        assert "killed" in hanger()["last_error"]
        before = len(stored(home, "readings/good"))
        agent.wait_for(lambda: len(stored(home, "readings/good")) >= before + 10)
        assert agent.stop() == 0
    lines = [line for line in agent.log().splitlines() if 'msg="sensor stuck"' in line]
    assert lines and "sensor=hanger" in lines[0] and f"call={hang_in}()" in lines[0]
    if hang_in == "sample":  # two good samples in every life of the process
        assert len(stored(home, "readings/hanger")) >= 4


@pytest.mark.slow
def test_a_process_instance_may_print(home: Path) -> None:
    process_config(home, '[[sensors.printer]]\nname = "printer"\ninterval = 0.05\n'
                   'isolation = "process"\n')  # fmt: skip
    with running_agent(home, plugins=FIXTURE_PLUGINS) as agent:
        agent.wait_for(lambda: len(stored(home, "readings/printer")) >= 20)
        assert (agent.sensor("printer") or {}).get("restarts") == 0
        assert agent.stop() == 0
    log = agent.log()
    for text in ("hello from print 3", "a warning on stderr 3", "raw bytes on fd 1 3"):
        lines = [line for line in log.splitlines() if text in line]
        assert lines and 'msg="plugin output"' in lines[0] and "sensor=printer" in lines[0], text
    values = [v["n"] for v in stored(home, "readings/printer")]
    assert values == list(range(1, len(values) + 1))  # one life, nothing lost
