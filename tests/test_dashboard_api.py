"""The board's dashboard API, over a real socket, from an agent running in-process.

* ``/metrics`` is valid Prometheus text exposition, checked by a strict parser
  written here (HELP and TYPE before each family's samples, one family once,
  names and label escapes as the format says), and its numbers are the status
  snapshot's.
* ``/api/readings`` answers the newest readings of the log, bounded; a bad
  parameter is a 400 naming it.
* ``/api/events`` pushes new readings and status without being asked again.
* ``/bundle`` streams a bundle that imports whole.
* The token: refused to start without one where it is needed; header, one-time
  ``?token=`` link and cookie; the Host check on loopback.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.bundle.importer import import_into_store
from agent.config import parse_config
from agent.errors import ConfigError
from agent.home import Home
from agent.plugin_api import FieldSpec, Sensor, SensorConfig, Value
from agent.plugins import ConfiguredSensor
from agent.readings import decode_reading_batch
from agent.runtime.agent import Agent
from agent.store.log_store import LogStore
from agent.web.metrics import render_metrics
from agent.web.token import make_token

from .conftest import run_lichen, seeded_identity

ME = seeded_identity(7)


class Counter(Sensor):
    fields = {"n": FieldSpec(unit="1", resolution=1)}

    def __init__(self, config: SensorConfig, context: Any) -> None:
        super().__init__(config, context)
        self.n = 0

    def sample(self) -> Mapping[str, Value]:
        self.n += 1
        return {"n": self.n}


# ------------------------------------------------------------------ a strict parser

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")
_VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], text)


def parse_exposition(text: str) -> dict[str, dict[str, Any]]:
    """Families by name: ``{"type", "help", "samples": [(labels, value)]}``; raises
    AssertionError on anything the text format (0.0.4) does not allow."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: empty line"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name), where
            assert name not in families, f"{where}: family {name} given twice"
            assert re.fullmatch(r"(?:[^\\]|\\\\|\\n)*", help_text), f"{where}: bad HELP escape"
            families[name] = {"help": _unescape(help_text), "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current, f"{where}: TYPE not right after its HELP"
            assert families[name]["type"] is None and not families[name]["samples"], where
            assert kind in ("counter", "gauge", "untyped"), where
            families[name]["type"] = kind
        else:
            assert not line.startswith("#"), f"{where}: unknown comment"
            match = _SAMPLE.match(line)
            assert match, f"{where}: not a sample line"
            name, value = match.group(1), match.group(match.lastindex or 0)
            assert name == current and families[name]["type"], f"{where}: sample outside its family"
            assert _VALUE.match(value), f"{where}: bad value"
            labels = {
                k: _unescape(v)
                for k, v in re.findall(_LABEL, line[len(name) : len(line) - len(value) - 1])
            }
            if families[name]["type"] == "counter":
                assert name.endswith("_total"), f"{where}: a counter's name ends in _total"
                assert float(value) >= 0, where
            assert labels not in [s[0] for s in families[name]["samples"]], f"{where}: duplicate"
            families[name]["samples"].append((labels, float(value)))
    for name, family in families.items():
        assert family["type"] and family["samples"], f"family {name} has no TYPE or no samples"
    return families


def value_of(families: dict[str, dict[str, Any]], family: str, **labels: str) -> float:
    for got, value in families[family]["samples"]:
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"no sample {family}{labels}")


def test_the_exposition_escapes_labels_and_help_and_leaves_unknowns_out() -> None:
    awkward = 'a "quoted" \\ back\nslash'
    status: dict[str, Any] = {
        "node_id": "lc1x",
        "log": {"entries": 5, "bytes": 100, "readings_stored": 3, "commits": 2},
        "sensors": [{"name": awkward, "plugin": "p", "collection": "readings/x",
                     "state": "failed", "readings": 7, "sample_errors": 2, "restarts": 1,
                     "last_reading_ms": None}],
        "sync": None,
        "uplink": {"connected": False, "backlog": {"entries": 4, "bytes": 80,
                                                   "oldest_unacked_age_s": 1.5},
                   "last_ack": None, "dropped": {"entries": 0, "bytes": 0}, "uplinks": []},
    }  # fmt: skip
    text = render_metrics(status, name="shed\n1", peers=[{"node": "lc1peer", "last_sync_ms": 1500,
                          "last_sync_ok": True, "entries_received": 3, "entries_sent": 4}],
                          disk=(10, 20))  # fmt: skip
    families = parse_exposition(text)
    assert value_of(families, "lichen_info", name="shed\n1") == 1
    sensor = {"sensor": awkward, "plugin": "p"}
    assert value_of(families, "lichen_sensor_sample_errors_total", **sensor) == 2
    assert value_of(families, "lichen_sensor_up", **sensor) == 0
    assert "lichen_sensor_last_reading_timestamp_seconds" not in families  # not known: not 0
    assert "lichen_sync_sessions_open" not in families  # no gossip runs
    assert value_of(families, "lichen_peer_last_sync_timestamp_seconds", peer="lc1peer") == 1.5
    assert value_of(families, "lichen_uplink_oldest_unacked_age_seconds") == 1.5
    assert value_of(families, "lichen_disk_free_bytes") == 10
    assert families["lichen_readings_stored_total"]["type"] == "counter"
    assert families["lichen_log_entries"]["type"] == "gauge"


def test_the_strict_parser_refuses_what_the_format_does_not_allow() -> None:
    good = "# HELP lichen_x_total X.\n# TYPE lichen_x_total counter\nlichen_x_total 1\n"
    parse_exposition(good)
    for bad in (
        good.replace("# HELP lichen_x_total X.\n", ""),  # no HELP
        good + "lichen_x_total 2\n",  # a duplicate sample
        good.replace("_total 1", '_total{a="b"c"} 1'),  # a raw quote in a label
        good.replace("1\n", "one\n"),  # not a number
        good + good,  # the family twice
        good.replace("lichen_x_total 1", "lichen_x 1"),  # a counter without _total
    ):
        with pytest.raises(AssertionError):
            parse_exposition(bad)


# ----------------------------------------------------------------- a running agent


def _config(extra: str = "") -> str:
    return (
        '[node]\nname = "test-board"\n[log]\nflush_interval = 0.1\n'
        f'[http]\nlisten = "127.0.0.1:0"\n{extra}'
    )


def make_agent(tmp_path: Path, extra: str = "") -> Agent:
    sensor = ConfiguredSensor("test", Counter, SensorConfig(name="count", interval=0.05), 0)
    agent = Agent(Home(tmp_path), parse_config(_config(extra)), ME, [sensor])
    agent.status_loop.interval = 0.2  # a snapshot every 0.2 s instead of 2 s
    return agent


async def get(
    port: int, path: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    return await asyncio.to_thread(fetch)


class Running:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.agent.run(self.stop))
        async with asyncio.timeout(20):
            while not (self.agent.status_loop.latest or {}).get("log", {}).get("entries"):
                assert not self.task.done(), self.task
                await asyncio.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        assert self.agent.dashboard is not None
        return self.agent.dashboard.server.port

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task


async def test_metrics_are_the_status_snapshot_and_parse_strictly(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    async with Running(agent) as running, asyncio.timeout(30):
        while True:  # a status written between the two requests: ask again
            status, headers, body = await get(running.port, "/api/status")
            _, metric_headers, text = await get(running.port, "/metrics")
            _, _, again = await get(running.port, "/api/status")
            snapshot = json.loads(body)["status"]
            if snapshot == json.loads(again)["status"]:
                break
    assert status == 200 and headers["content-type"] == "application/json"
    assert metric_headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_exposition(text.decode())
    assert value_of(families, "lichen_log_entries") == snapshot["log"]["entries"] > 0
    count = next(s for s in snapshot["sensors"] if s["name"] == "count")
    labels = {"sensor": "count", "plugin": "test", "collection": "readings/count"}
    assert value_of(families, "lichen_sensor_readings_total", **labels) == count["readings"] > 0
    assert value_of(families, "lichen_sensor_sample_errors_total", **labels) == 0
    assert value_of(families, "lichen_sensor_up", **labels) == 1
    assert (
        value_of(families, "lichen_uplink_backlog_entries")
        == (snapshot["uplink"]["backlog"]["entries"])
    )
    assert value_of(families, "lichen_info", node_id=str(ME.node_id), name="test-board") == 1
    assert value_of(families, "lichen_disk_size_bytes") > value_of(
        families, "lichen_disk_free_bytes"
    )
    assert value_of(families, "lichen_http_requests_total") >= 2
    assert snapshot["http"]["address"] == f"127.0.0.1:{running.port}"


async def test_latest_readings_are_the_logs_newest_and_bounded(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    async with Running(agent) as running:
        async with asyncio.timeout(20):
            while agent.readings.stored < 12:
                await asyncio.sleep(0.02)
        status, _, body = await get(running.port, "/api/readings?collection=readings/count&limit=5")
        answer = json.loads(body)
        newest = answer["readings"][-1]["ts_ms"]
        _, _, later = await get(
            running.port, f"/api/readings?collection=readings/count&after={newest}"
        )
        bad = [await get(running.port, q) for q in (
            "/api/readings?collection=readings/count&limit=0",
            "/api/readings?collection=readings/count&limit=x",
            "/api/readings?collection=",
            "/api/readings?collection=readings/count&color=red",
        )]  # fmt: skip
    with LogStore(tmp_path / "log.db") as store:
        stored = [(r.ts_ms, r.values) for e in store.by_time("readings/count")
                  for r in decode_reading_batch(e.body)]  # fmt: skip
    assert status == 200 and answer["limit"] == 5 and answer["more"] is True
    got = [(r["ts_ms"], r["values"]) for r in answer["readings"]]
    position = stored.index(got[0])
    assert got == stored[position : position + 5]  # five in a row, oldest first
    assert answer["fields"] == {"n": {"unit": "1", "resolution": 1}}
    assert all(r["ts_ms"] > newest for r in json.loads(later)["readings"])
    assert [(s, json.loads(b)["parameter"]) for s, _, b in bad] == [
        (400, "limit"),
        (400, "limit"),
        (400, "collection"),
        (400, "color"),
    ]


async def _read_event(reader: asyncio.StreamReader, kind: str) -> Any:
    """The data of the next event of ``kind`` on a chunked event stream."""
    while True:
        line = await reader.readline()
        assert line, "the stream ended"
        if line.strip() == f"event: {kind}".encode():
            data = await reader.readline()
            return json.loads(data.decode().removeprefix("data: "))


async def test_the_event_stream_pushes_readings_and_status(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "max_streams = 1\n")
    async with Running(agent) as running, asyncio.timeout(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"200 OK" in head and b"text/event-stream" in head
        first = await _read_event(reader, "status")  # at once: the snapshot written last
        assert first["node"] == {"id": str(ME.node_id), "name": "test-board"}
        assert first["status"]["node_id"] == str(ME.node_id) and "peers" in first
        seen = (await _read_event(reader, "readings"))[0]
        later = (await _read_event(reader, "readings"))[0]
        assert seen["collection"] == later["collection"] == "readings/count"
        assert later["values"]["n"] > seen["values"]["n"]  # pushed, never asked for
        pushed = await _read_event(reader, "status")
        assert pushed["status"]["updated_at_ms"] > first["status"]["updated_at_ms"]
        status, headers, _ = await get(running.port, "/api/events")  # one more than max_streams
        assert status == 503 and headers["retry-after"] == "10"
        writer.close()
        await writer.wait_closed()
        assert agent.dashboard is not None
        while agent.dashboard.streams.open:  # the page went away: its stream ends
            await asyncio.sleep(0.02)


async def test_the_bundle_download_imports_whole(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "board")
    async with Running(agent) as running:
        status, headers, body = await get(running.port, "/bundle")
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    assert re.fullmatch(r'attachment; filename="test-board-\d{8}T\d{6}Z\.lcb"',
                        headers["content-disposition"])  # fmt: skip
    bundle = tmp_path / "download.lcb"
    bundle.write_bytes(body)
    with LogStore(tmp_path / "copy.db") as copy:
        report = import_into_store(bundle, copy, opener=None)
        assert report.refused == 0 and report.stored > 0
        assert copy.head(ME.node_id.key) is not None
    with LogStore(tmp_path / "board" / "log.db") as store:
        held = store.head(ME.node_id.key)
    assert held is not None and report.stored <= held.seq  # what the log held when it began


async def test_loopback_serves_only_loopback_host_names(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    async with Running(agent) as running:
        port = running.port
        ok = [(await get(port, "/api/status", {"Host": f"{h}:{port}"}))[0]
              for h in ("127.0.0.1", "localhost", "[::1]")]  # fmt: skip
        rebound = await get(port, "/api/status", {"Host": f"attacker.example:{port}"})
        other_port = await get(port, "/api/status", {"Host": f"127.0.0.1:{port + 1}"})
    assert ok == [200, 200, 200]
    assert rebound[0] == other_port[0] == 403
    assert b"attacker.example" in rebound[2]


async def test_with_the_token_forced_on_loopback_every_request_needs_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:  # no token in the home yet: no start
        make_agent(tmp_path, "token_on_loopback = true\n")
    assert "lichen" in str(refused.value) and "http token" in str(refused.value)
    token, made = make_token(Home(tmp_path).http_token)
    assert made and len(token) >= 32 and (Home(tmp_path).http_token.stat().st_mode & 0o777) == 0o600
    agent = make_agent(tmp_path, "token_on_loopback = true\n")
    async with Running(agent) as running:
        port = running.port
        anonymous = await get(port, "/api/status")
        wrong = await get(port, "/api/status", {"Authorization": "Bearer " + "x" * len(token)})
        bearer = await get(port, "/api/status", {"Authorization": f"Bearer {token}"})
        wrong_link = await get(port, "/?token=nope")
        link = await get(port, f"/api/readings?token={token}&collection=readings/count")
        cookie = link[1]["set-cookie"]
        jar = {"Cookie": cookie.partition(";")[0]}
        with_cookie = await get(port, "/api/readings?collection=readings/count", jar)
        forged = await get(port, "/metrics", {"Cookie": "lichen_token=" + "y" * len(token)})
        again = await get(port, f"/?token={token}", jar)  # the link once more: still cleaned
    assert anonymous[0] == wrong[0] == wrong_link[0] == forged[0] == 401
    assert anonymous[1]["www-authenticate"] == 'Bearer realm="lichen"'
    assert "token" in json.loads(anonymous[2])["error"]
    assert bearer[0] == 200
    assert link[0] == 303 and link[1]["location"] == "/api/readings?collection=readings%2Fcount"
    assert {p.strip() for p in cookie.split(";")} == {
        f"lichen_token={token}",
        "Path=/",
        "HttpOnly",
        "SameSite=Strict",
    }
    assert with_cookie[0] == 200 and json.loads(with_cookie[2])["readings"]
    assert again[0] == 303 and again[1]["location"] == "/"
    assert agent.status()["http"]["refused"] == 4


@pytest.mark.slow
def test_beyond_loopback_the_agent_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    home = tmp_path / "node"
    run_lichen("init", "--board", "generic", "--name", "n", home=home)
    refused = run_lichen("run", "--http", "0.0.0.0:0", home=home, check=False, timeout=30)
    assert refused.returncode == 2, refused
    assert "needs the node's access token" in refused.stderr
    assert "http token" in refused.stderr and "Fix:" in refused.stderr
    assert not (home / "run" / "status.json").exists()  # nothing started
    bad = run_lichen("run", "--http", "0.0.0.0", home=home, check=False, timeout=30)
    assert bad.returncode == 2 and "--http" in bad.stderr
    first = run_lichen("http", "token", home=home)
    again = run_lichen("http", "token", home=home)
    assert first.stdout == again.stdout and "made a new token" in first.stderr
    assert len(first.stdout.strip()) >= 32
    renewed = run_lichen("http", "token", "--new", home=home)
    assert renewed.stdout != first.stdout
    (home / "state" / "http-token").write_text("short\n")
    weak = run_lichen("run", "--http", "0.0.0.0:0", home=home, check=False, timeout=30)
    assert weak.returncode == 2 and "http-token" in weak.stderr and "at least 16" in weak.stderr


def test_a_taken_dashboard_address_stops_the_agent_naming_it_and_the_fix(
    tmp_path: Path,
) -> None:
    home = tmp_path / "node"
    run_lichen("init", "--board", "generic", "--name", "n", home=home)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run_lichen("run", "--http", f"127.0.0.1:{port}", home=home, check=False,
                             timeout=30)  # fmt: skip
    assert refused.returncode == 1, refused
    assert (
        f"lichen: error: cannot serve the dashboard on 127.0.0.1:{port}: address already in use "
        "(EADDRINUSE). Fix: [http] listen or --http HOST:PORT (port 0 picks a free one; off: none)"
    ) in refused.stderr, refused.stderr


async def test_the_page_is_our_own_small_files_under_a_strict_policy(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    async with Running(agent) as running:
        page = await get(running.port, "/")
        assets = {name: await get(running.port, f"/static/{name}")
                  for name in ("dashboard.js", "dashboard.css", "icon.svg")}  # fmt: skip
        missing = await get(running.port, "/static/../../identity.key")
        other = await get(running.port, "/static/nothing.js")
    status, headers, html = page
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and headers["x-content-type-options"] == "nosniff"
    assert assets["dashboard.js"][1]["content-type"] == "text/javascript; charset=utf-8"
    assert assets["dashboard.css"][1]["content-type"] == "text/css; charset=utf-8"
    assert all(status == 200 for status, _, _ in assets.values())
    assert missing[0] == other[0] == 404
    texts = [html, *(body for _, _, body in assets.values())]
    # nothing from elsewhere: no CDN, no font service (the SVG namespace is a name, not a fetch)
    for text in texts:
        assert not re.search(rb"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]", text)
    assert sum(len(t) for t in texts) < 32 * 1024  # small enough for a board and a phone
