"""Bundles as people use them: real homes made by `lichen init`, the CLI as real
processes, a bundle carried from board A to board B (which gossips it on), to a
laptop, and to a cloud home that admits it as it admits uploads."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.identity import NodeId

from .conftest import run_lichen
from .helpers.agents import free_port, make_nodes, start, status, stop, wait_for
from .helpers.cloud import make_cloud_home
from .helpers.postgres import PostgresServer, start_postgres

pytestmark = pytest.mark.slow


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def own_feed(home: Path) -> dict[str, Any]:
    feeds = [f for f in status(home)["feeds"] if f["own"]]
    return feeds[0] if feeds else {}


def feed_of(home: Path, author: str) -> dict[str, Any]:
    feeds: dict[str, dict[str, Any]] = {f["author"]: f for f in status(home)["feeds"]}
    return feeds.get(author, {})


def log_digest(home: Path) -> str:
    """Every row an import could change, read from the home's SQLite file."""
    h = hashlib.sha256()
    with sqlite3.connect(f"file:{home / 'log.db'}?mode=ro", uri=True) as conn:
        for table in ("entries", "feeds", "collections", "forks", "doc_versions"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                h.update(repr(row).encode())
    return h.hexdigest()


def readings_on(home: Path, running: list[subprocess.Popen[str]], n: int = 4) -> dict[str, Any]:
    """Run the (simulated) board until its own feed holds ``n`` entries, then stop it."""
    process = start(home)
    running.append(process)
    wait_for(f"{n} entries on {home.name}", lambda: own_feed(home).get("head_seq", 0) >= n,
             log=home / "agent.log", process=process)  # fmt: skip
    stop([process])
    return own_feed(home)


def test_a_bundle_carried_from_board_a_to_board_b_travels_on_by_gossip(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, b, c = make_nodes(tmp_path, 3)
    made = readings_on(a, running)
    stick = tmp_path / "stick"
    stick.mkdir()
    bundle = stick / "a.lcb"
    out = json.loads(run_lichen("bundle", "export", str(bundle), "--json", home=a).stdout)
    assert out["entries"] == made["entries"] and out["complete"], out
    assert not list(stick.glob("*.part"))

    # B's agent runs (writing its own readings) while the bundle is imported
    port = free_port()
    process = start(b, "--listen", f"tcp://127.0.0.1:{port}")
    running.append(process)
    wait_for("B running", lambda: own_feed(b).get("head_seq"), process=process)
    first = json.loads(run_lichen("bundle", "import", str(bundle), "--json", home=b).stdout)
    assert (first["stored"], first["already_held"], first["refused"]) == (made["entries"], 0, 0)
    again = run_lichen("bundle", "import", str(bundle), home=b)
    assert f"{made['entries']} entries, 0 new, {made['entries']} already held" in again.stdout
    assert feed_of(b, made["author"])["head_seq"] == made["head_seq"]
    run_lichen("log", "verify", home=b)

    # B hands what it imported on over the mesh: C never met A
    summary = json.loads(run_lichen("sync", f"tcp://127.0.0.1:{port}", "--json", home=c).stdout)
    assert summary["error"] is None, summary
    held = feed_of(c, made["author"])
    assert held["head_seq"] >= made["head_seq"] and held["entries"] >= made["entries"], held
    run_lichen("log", "verify", home=c)
    stop([process])
    assert process.returncode == 0, (b / "agent.log").read_text()[-3000:]


def test_the_cli_refuses_a_bad_bundle_in_one_line_and_touches_nothing(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, laptop = make_nodes(tmp_path, 2, trust=False)
    readings_on(a, running, 2)
    run_lichen("log", "append", "notes", '{"text": "on the laptop already"}', home=laptop)
    good = tmp_path / "a.lcb"
    run_lichen("bundle", "export", str(good), home=a)
    data = good.read_bytes()
    cases = {
        "truncated": (data[: len(data) - 30], "truncated"),
        "altered": (data[:200] + bytes([data[200] ^ 4]) + data[201:], "altered|corrupt|forged"),
    }
    before = log_digest(laptop)
    for name, (content, reason) in cases.items():
        bad = tmp_path / f"{name}.lcb"
        bad.write_bytes(content)
        result = run_lichen("bundle", "import", str(bad), home=laptop, check=False)
        assert result.returncode == 1, (name, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lichen: error: "), (name, result.stderr)
        assert any(word in lines[0] for word in reason.split("|")), (name, lines)
        assert log_digest(laptop) == before, name
    usage = run_lichen("bundle", "export", "--seal-to", "lc1nonsense", "x.lcb", home=a, check=False)
    assert usage.returncode == 2 and "--seal-to" in usage.stderr
    missing = run_lichen("bundle", "import", str(tmp_path / "nowhere.lcb"), home=a, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    exists = run_lichen("bundle", "export", str(good), home=a, check=False)
    assert exists.returncode == 1 and "exists" in exists.stderr
    # the laptop takes the good one, and shows what it holds
    shown = json.loads(run_lichen("bundle", "show", str(good), "--json", home=laptop).stdout)
    assert shown["sealed_to"] is None and shown["entries"] >= 2
    run_lichen("bundle", "import", str(good), home=laptop)
    assert feed_of(laptop, shown["exporter"].split()[0])["entries"] == shown["entries"]


def test_a_cloud_home_admits_a_sealed_bundle_as_it_admits_uploads(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, carrier, stranger = make_nodes(tmp_path, 3, trust=False)
    made = readings_on(a, running)
    cloud_home = tmp_path / "cloud"
    cloud = make_cloud_home(cloud_home, trust=[made["author"]])
    cloud_id = str(cloud.node_id)
    sealed = tmp_path / "sealed.lcb"
    run_lichen("bundle", "export", "--seal-to", cloud_id, str(sealed), home=a)
    # whoever carries it can neither read nor import it
    refused = run_lichen("bundle", "import", str(sealed), home=carrier, check=False)
    assert refused.returncode == 1 and f"sealed to {cloud_id}" in refused.stderr, refused.stderr
    assert feed_of(carrier, made["author"]) == {}

    first = json.loads(
        run_lichen("bundle", "import", str(sealed), "--json", home=cloud_home).stdout
    )
    assert (first["stored"], first["refused"]) == (made["entries"], 0), first
    again = json.loads(
        run_lichen("bundle", "import", str(sealed), "--json", home=cloud_home).stdout
    )
    assert (again["stored"], again["already_held"]) == (0, made["entries"]), again
    # the cloud acknowledged the feed in its own log, as after an upload
    with sqlite3.connect(f"file:{cloud_home / 'log.db'}?mode=ro", uri=True) as conn:
        from agent.entry import decode_entry

        acks = [
            decode_entry(bytes(raw)).body["seq"]
            for (raw,) in conn.execute(
                "SELECT raw FROM entries e JOIN collections c ON c.id = e.collection "
                "WHERE c.name = '_acks'"
            )
            if decode_entry(bytes(raw)).doc_id == made["author"]
        ]
    assert acks and max(acks) == made["head_seq"], acks

    # the custody receipts come back by stick too: the cloud's acknowledgements,
    # imported while the board runs, count as if they had come over MQTT
    config = a / "lichen.toml"
    config.write_text(config.read_text() + f'\n[retention]\nack_from = ["{cloud_id}"]\n')
    receipts = tmp_path / "receipts.lcb"
    run_lichen("bundle", "export", "--collections", "_acks", str(receipts), home=cloud_home)
    process = start(a)
    running.append(process)
    wait_for("A running", lambda: own_feed(a).get("head_seq", 0) > made["head_seq"],
             process=process, log=a / "agent.log")  # fmt: skip
    run_lichen("bundle", "import", str(receipts), home=a)
    wait_for(
        "A counting the cloud's acknowledgement",
        lambda: status(a)["acked"].get(made["author"], 0) >= made["head_seq"],
        process=process,
        log=a / "agent.log",
    )
    stop([process])

    # a board the cloud does not trust: its entries are refused, as its uploads would be
    other = readings_on(stranger, running, 2)
    unknown = tmp_path / "stranger.lcb"
    run_lichen("bundle", "export", "--seal-to", cloud_id, str(unknown), home=stranger)
    result = run_lichen("bundle", "import", str(unknown), "--json", home=cloud_home, check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["stored"] == 0 and report["refused"] == other["entries"], report
    assert "untrusted" in report["reasons"][0]
    assert NodeId.parse(other["author"])  # named by a real node id


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


def test_a_cloud_home_on_postgresql_admits_a_bundle_exactly_once(
    tmp_path: Path, running: list[subprocess.Popen[str]], postgres: PostgresServer
) -> None:
    import psycopg

    (a,) = make_nodes(tmp_path, 1, trust=False)
    made = readings_on(a, running, 3)
    dsn = postgres.create_database("bundles")
    cloud_home = tmp_path / "cloud"
    cloud = make_cloud_home(
        cloud_home, f'sink = "postgres"\npostgres = "{dsn}"', trust=[made["author"]]
    )
    bundle = tmp_path / "a.lcb"
    run_lichen("bundle", "export", "--seal-to", str(cloud.node_id), str(bundle), home=a)
    for stored, held in ((made["entries"], 0), (0, made["entries"])):
        report = json.loads(
            run_lichen("bundle", "import", str(bundle), "--json", home=cloud_home).stdout
        )
        assert (report["stored"], report["already_held"], report["refused"]) == (stored, held, 0)
    author = NodeId.parse(made["author"]).key
    with psycopg.connect(dsn) as conn:
        entries = conn.execute(
            "SELECT count(*) FROM lichen.entries WHERE author = %s", (author,)
        ).fetchone()
        acked = conn.execute(
            "SELECT acked_seq FROM lichen.feeds WHERE author = %s", (author,)
        ).fetchone()
    assert entries == (made["entries"],) and acked == (made["head_seq"],)
