"""A sensor that returns what the log cannot store hurts only itself: the reading is
refused at the sensor boundary (counted, shown in status, logged with the sensor,
the field and the problem), every other sensor keeps being written, and a clean
stop exits 0 with nothing pending lost. Real `lichen run` processes; the bad
plugin is a fixture distribution found through its dist-info."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest

from agent.reading_check import MAX_FIELDS, ReadingCheck, check_reading
from agent.readings import FieldSpec, Value, decode_reading_batch
from agent.store.log_store import LogStore

from .conftest import LICHEN
from .helpers.agent_process import FIXTURE_PLUGINS, running_agent

# case → what the refusal must name: the field and the problem
CASES = {
    "none-key": ("None", "not text"),
    "object": ("level", "_Opaque"),
    "text-for-number": ("level", "not a number"),
    "nan": ("level", "not a finite number"),
    "inf": ("level", "not a finite number"),
    "undeclared": ("surprise", "not declared"),
    "thousands": ("5000 fields", "at most"),
}


def stored(home: Path, collection: str) -> list[dict[str, Value]]:
    with LogStore(home / "log.db") as store:
        return [r.values for e in store.by_time(collection) for r in decode_reading_batch(e.body)]


@pytest.mark.parametrize(
    ("case", "isolation"),
    [(case, "thread") for case in sorted(CASES)]
    # through the child's pipe: what JSON cannot carry is refused in the child
    + [("object", "process"), ("none-key", "process"), ("nan", "process")],
)
@pytest.mark.slow
def test_a_bad_reading_is_refused_and_every_other_reading_is_written(
    home: Path, case: str, isolation: str
) -> None:
    config = home / "lichen.toml"
    config.write_text(
        config.read_text().replace("flush_interval = 1.0", "flush_interval = 0.1")
        + '\n[[sensors.sim]]\nname = "good"\ninterval = 0.05\n'
        + f'\n[[sensors.badvalues]]\nname = "bad"\ninterval = 0.05\ncase = "{case}"\n'
        + f'isolation = "{isolation}"\n'
    )
    field, problem = CASES[case]
    with running_agent(home, plugins=FIXTURE_PLUGINS) as agent:

        def refused() -> int:
            bad = agent.sensor("bad")
            return int(bad.get("refused", 0)) if bad else 0

        agent.wait_for(lambda: refused() >= 3)
        before = len(stored(home, "readings/good"))
        # the good sensor's readings keep arriving after the bad ones were refused
        agent.wait_for(lambda: len(stored(home, "readings/good")) >= before + 10)
        bad = agent.sensor("bad")
        assert bad is not None and field in bad["last_refused"] and problem in bad["last_refused"]
        assert bad["state"] == "running" and bad["restarts"] == 0
        for command in (["status"], ["plugins", "list"]):  # shown to people too
            shown = subprocess.run(
                [str(LICHEN), *command],
                env=dict(os.environ, LICHEN_HOME=str(home), PYTHONPATH=str(FIXTURE_PLUGINS)),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "refused" in shown and field in shown, (command, shown)
        code = agent.stop()
    log = agent.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    refusals = [line for line in log.splitlines() if 'msg="reading refused"' in line]
    assert refusals and "sensor=bad" in refusals[0] and field in refusals[0], log[-3000:]
    assert problem in refusals[0]
    # the clean stop wrote the backlog: every reading the sensors delivered is stored
    final = {s["name"]: s for s in agent.status()["sensors"]}  # type: ignore[index]
    assert final["good"]["readings"] == len(stored(home, "readings/good")) > 10
    levels = stored(home, "readings/bad")
    assert final["bad"]["readings"] == len(levels) >= 1  # its good readings (every other)
    assert all(set(v) == {"level"} for v in levels)
    assert final["bad"]["refused"] >= 3


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"level": 1.5}, None),
        ({"level": None}, None),  # a field may be missing from one reading
        ({"level": 7}, None),
        ({"level": True}, "not a number"),  # a bool is not a declared number
        ({"level": 2**70}, "64-bit"),
        ({"note": "x" * 2000}, "not declared"),
        ({"": 1}, "1 to 64 characters"),
        ({"level": [1, 2]}, "list"),
        ({"level": math.inf}, "not a finite number"),
    ],
)
def test_check_reading_names_the_field_and_the_problem(
    values: dict[object, object], problem: str | None
) -> None:
    fields = {"level": FieldSpec(resolution=0.1)}
    found = check_reading(values, fields)  # type: ignore[arg-type]
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_undeclared_fields_are_free_form_within_bounds() -> None:
    """A sensor that declares no fields may name its own, within the same bounds."""
    assert check_reading({"anything": "text", "n": 2.5, "b": False}, {}) is None
    assert "text of" in (check_reading({"note": "x" * 5000}, {}) or "")
    assert "not a finite number" in (check_reading({"x": math.nan}, {}) or "")
    assert "at most" in (check_reading({f"f{i}": i for i in range(200)}, {}) or "")


def test_a_sensor_without_declared_fields_may_use_a_bounded_number_of_names() -> None:
    check = ReadingCheck({})
    for i in range(MAX_FIELDS):
        assert check.problem({f"f{i}": i}) is None
    assert check.problem({"f0": 1, "f1": 2}) is None  # names already seen
    assert "distinct field names" in (check.problem({"one-more": 1}) or "")
