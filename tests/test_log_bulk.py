"""``lichen log append --ndjson`` (bulk writes) and ``lichen log export --csv``,
run as real processes over a real log."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.store.log_store import LogStore

from .conftest import LICHEN, run_lichen
from .helpers.agents import start, stop


def lichen(home: Path, *args: str, stdin: str | bytes | None = None) -> Any:
    env = {**os.environ, "LICHEN_HOME": str(home)}
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [str(LICHEN), *args], input=data, capture_output=True, timeout=120, env=env, check=False
    )


def entries(home: Path) -> list[Any]:
    with LogStore(home / "log.db") as store:
        return [entry for _, entry in store.changes_since(0)]


def lines_of(objects: list[Any]) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def test_a_file_of_many_lines_is_appended_in_order(home: Path, tmp_path: Path) -> None:
    rows = [{"collection": "notes", "body": {"n": i}} for i in range(1, 1201)]
    rows[10] = {"collection": "config", "id": "site", "body": {"interval": 5}}
    rows[900] = {"collection": "config", "id": "site", "body": {"interval": 7}}
    source = tmp_path / "bulk.ndjson"
    source.write_text(lines_of(rows[:600]) + "\n   \n" + lines_of(rows[600:]))  # blank lines
    result = lichen(home, "log", "append", "--ndjson", str(source), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "lines": 1202,
        "appended": 1200,
        "first_seq": 1,
        "last_seq": 1200,
        "error": None,
        "store_error": None,
    }
    stored = entries(home)
    assert [e.seq for e in stored] == list(range(1, 1201))
    assert [e.body for e in stored if e.collection == "notes"][:3] == [{"n": 1}, {"n": 2}, {"n": 3}]
    with LogStore(home / "log.db") as store:
        document = store.documents.get("config", "site")
    assert document is not None and document.body == {"interval": 7} and not document.conflicts


def test_stdin_with_a_fixed_collection(home: Path) -> None:
    result = lichen(
        home, "log", "append", "--ndjson", "-", "--collection", "events/door",
        stdin='{"open": true}\n{"open": false}\n"just text"\n',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"appended 3 entries (lines 1-3)" in result.stdout
    stored = entries(home)
    assert [(e.collection, e.body) for e in stored] == [
        ("events/door", {"open": True}),
        ("events/door", {"open": False}),
        ("events/door", "just text"),
    ]


def test_a_bad_line_stops_the_run_and_keeps_the_lines_before_it(home: Path) -> None:
    rows = [{"collection": "notes", "body": {"n": i}} for i in range(1, 801)]
    text = lines_of(rows[:700]) + '{"collection": "notes", "body": {"n": 701}\n' + lines_of(rows)
    result = lichen(home, "log", "append", "--ndjson", "-", stdin=text)
    assert result.returncode == 1
    error = result.stderr.decode()
    assert "line 701: not JSON" in error
    assert "lines 1-700 are stored (700 entries); nothing from line 701 on was written" in error
    assert "tail -n +701" in error
    stored = entries(home)
    assert len(stored) == 700 and stored[-1].body == {"n": 700}


def test_a_line_the_store_refuses_leaves_nothing_after_it(home: Path) -> None:
    """A body too large for an entry passes the line checks and is refused by the
    store inside its batch: the lines before it are written one by one, it and
    the rest of the batch not at all."""
    rows: list[Any] = [{"collection": "notes", "body": {"n": i}} for i in range(1, 11)]
    rows[6] = {"collection": "notes", "body": {"blob": "x" * 20_000}}
    result = lichen(home, "log", "append", "--ndjson", "-", "--json", stdin=lines_of(rows))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["appended"] == 6 and report["error"]["line"] == 7
    assert "16384" in report["error"]["problem"]
    assert [e.body["n"] for e in entries(home)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_each_bad_line_is_named(home: Path) -> None:
    cases = {
        '{"collection": "notes"}': "line 2: has no 'body'",
        '{"collection": "notes", "body": 1, "ttl": 5}': "line 2: unknown key 'ttl'",
        '{"collection": "_fleet", "body": 1}': "line 2: collection '_fleet'",
        '{"collection": "no spaces", "body": 1}': "line 2: ",
        '{"collection": "notes", "id": "", "body": 1}': "line 2: document id ''",
        "[1, 2]": "line 2: must be an object",
    }
    first = '{"collection": "notes", "body": 0}\n'
    for line, message in cases.items():
        result = lichen(home, "log", "append", "--ndjson", "-", stdin=first + line + "\n")
        assert result.returncode == 1 and message in result.stderr.decode(), (line, result.stderr)
    huge = first.encode() + b'{"collection": "notes", "body": "' + b"x" * 200_000 + b'"}\n'
    result = lichen(home, "log", "append", "--ndjson", "-", stdin=huge)
    assert result.returncode == 1 and b"line 2: longer than" in result.stderr
    assert len(entries(home)) == len(cases) + 1  # each run stored its good first line


def test_usage_errors(home: Path) -> None:
    both = lichen(home, "log", "append", "notes", "{}", "--ndjson", "-", stdin="")
    assert both.returncode == 2 and b"--ndjson" in both.stderr
    neither = lichen(home, "log", "append", "notes")
    assert neither.returncode == 2
    empty = lichen(home, "log", "append", "--ndjson", "-", stdin="")
    assert empty.returncode == 0 and b"appended 0 entries" in empty.stdout


@pytest.mark.slow  # a real agent writes the readings
def test_export_csv(tmp_path: Path) -> None:
    home = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "shed-1", home=home)
    # the simulated door changes every 30 s on average: no change in the first
    # minute is common (e^-2); here it changes about every second
    config = home / "lichen.toml"
    starter = config.read_text()
    assert starter.count('kind = "door"\n') == 1
    config.write_text(
        starter.replace('kind = "door"\n', 'kind = "door"\nmean_event_interval = 1.0\n')
    )
    node = run_lichen("id", home=home).stdout.strip()
    agent = start(home)
    try:
        deadline = time.monotonic() + 60
        while not {"readings/climate", "readings/door"} <= {e.collection for e in entries(home)}:
            assert time.monotonic() < deadline, (home / "agent.log").read_text()[-2000:]
            time.sleep(0.2)
        # a bulk append while the agent writes its readings to the same feed
        notes = lines_of([{"collection": "notes", "body": {"n": i}} for i in range(300)])
        bulk = lichen(home, "log", "append", "--ndjson", "-", stdin=notes)
        assert bulk.returncode == 0, bulk.stderr
    finally:
        stop([agent])
    assert [e.body["n"] for e in entries(home) if e.collection == "notes"] == list(range(300))
    assert "ok:" in run_lichen("log", "verify", home=home).stdout
    with LogStore(home / "log.db") as store:  # the name other nodes' exports will show
        described = store.documents.get("_sensors", f"readings/climate@{node}")
    assert described is not None and described.body["node"] == "shed-1"
    out = run_lichen("log", "export", "--csv", home=home).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "time", "node", "node_id", "collection", "sensor", "quantity", "value", "unit", "quality"
    ]  # fmt: skip
    climate = [r for r in rows if r["collection"] == "readings/climate"]
    temperature = next(r for r in climate if r["quantity"] == "temperature")
    assert temperature["node"] == "shed-1" and temperature["node_id"] == node
    assert temperature["sensor"] == "climate" and temperature["unit"] == "°C"
    assert temperature["time"].endswith("Z") and temperature["time"][10] == "T"
    float(temperature["value"])
    only = run_lichen("log", "export", "--csv", "--collection", "readings/door", home=home).stdout
    assert {r["collection"] for r in csv.DictReader(io.StringIO(only))} == {"readings/door"}
    future = run_lichen("log", "export", "--csv", "--since", "2099-01-01", home=home).stdout
    assert future.splitlines() == [out.splitlines()[0]]
    mine = run_lichen("log", "export", "--csv", "--node", node, home=home).stdout
    assert mine == out
    stranger = run_lichen("id", home=make_other(tmp_path)).stdout.strip()
    theirs = run_lichen("log", "export", "--csv", "--node", stranger, home=home).stdout
    assert theirs.splitlines() == [out.splitlines()[0]]
    bad = run_lichen("log", "export", "--csv", "--since", "last tuesday", home=home, check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr
    to_file = tmp_path / "out.csv"
    run_lichen("log", "export", "--csv", "-o", str(to_file), home=home)
    assert to_file.read_text() == out


def make_other(tmp_path: Path) -> Path:
    other = tmp_path / "other"
    run_lichen("init", "--board", "generic", "--name", "other", home=other)
    return other
