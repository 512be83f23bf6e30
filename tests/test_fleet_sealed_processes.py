"""A sealed collection with real `lichen` processes on loopback TCP: a writer, a
relay that carries it and a reader. The relay holds the writer's entries and
passes them on, but cannot open them; the reader reads them."""

from __future__ import annotations

import csv
import functools
import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.clock import HybridClock
from agent.fleet import (
    COLLECTION,
    Keyring,
    SealedError,
    fold,
    op_body,
    parse_fleet_id,
    write_fleet_file,
)
from agent.fleet.sealing import is_sealed_body
from agent.identity import load_identity
from agent.store.log_store import Draft, LogStore

from .conftest import run_lichen
from .helpers.agents import can_connect, free_port, make_nodes, node_id, start, stop, wait_for
from .test_fleet_processes import held_seqs

pytestmark = pytest.mark.slow


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def tcp(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def admit(admin: Path, others: dict[Path, str]) -> bytes:
    """``admin`` adds and approves each of ``others`` in its group (what an invite,
    a join and `lichen fleet approve` write), and hands each the fleet document."""
    fleet = parse_fleet_id(json.loads((admin / "state" / "fleet.json").read_text())["fleet"])
    identity = load_identity(admin / "identity.key")
    with LogStore(admin / "log.db") as store:
        drafts = []
        for home, group in others.items():
            key = load_identity(home / "identity.key").node_id.key
            drafts.append(Draft(COLLECTION, op_body("add", fleet, key, groups=[group])))
            drafts.append(Draft(COLLECTION, op_body("approve", fleet, key)))
        store.append(identity, HybridClock(), drafts)
    return fleet


def hand_document(admin: Path, home: Path, fleet: bytes) -> None:
    with LogStore(admin / "log.db") as source, LogStore(home / "log.db") as target:
        for entry in source.by_time(COLLECTION):
            target.insert(entry)
    write_fleet_file(home / "state" / "fleet.json", fleet)


def csv_values(home: Path) -> tuple[list[str], str]:
    done = run_lichen("log", "export", "--csv", "--collection", "secret/tank", home=home)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    return [r["value"] for r in rows], done.stderr


def test_a_relay_carries_a_sealed_collection_it_cannot_read_to_its_reader(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    writer, relay, reader = make_nodes(tmp_path, 3, trust=False)
    run_lichen("fleet", "init", home=reader)
    idw, idr, idd = node_id(writer), node_id(relay), node_id(reader)
    fleet = admit(reader, {writer: "sensors", relay: "relays"})
    run_lichen("fleet", "group", idd, "--groups", "ops", home=reader)
    shown = run_lichen("fleet", "rule", "secret/*", "--read", "ops", "--write", "sensors",
                       "--carry", "relays", "--sealed", home=reader)  # fmt: skip
    assert "carry groups relays; sealed" in shown.stdout
    assert "key generation 1 of secret/* sealed to 1 readers" in shown.stdout
    for home in (writer, relay):
        hand_document(reader, home, fleet)
    now = int(time.time() * 1000)
    for i in range(3):
        body = json.dumps({"t": [now + i], "v": {"level": [40.5 + i]}})
        run_lichen("log", "append", "secret/tank", body, home=writer)
    with LogStore(writer / "log.db") as store:  # sealed before it was signed
        written = list(store.by_time("secret/tank"))
    assert len(written) == 3 and all(is_sealed_body(e.body) for e in written)
    assert csv_values(writer)[0] == ["40.5", "41.5", "42.5"]  # a writer reads its own

    pr = free_port()
    running.append(start(relay, "--listen", tcp(pr)))
    wait_for("the relay to listen", lambda: can_connect(pr), log=relay / "agent.log")
    running.append(start(writer, "--listen", tcp(free_port()), "--peer", tcp(pr)))
    running.append(start(reader, "--listen", tcp(free_port()), "--peer", tcp(pr)))
    seqs = [e.seq for e in written]
    for home in (relay, reader):
        wait_for(f"{home.name} to hold the sealed entries",
                 functools.partial(lambda h: set(seqs) <= set(held_seqs(h, idw)), home),
                 timeout=30, log=home / "agent.log")  # fmt: skip

    # the relay holds them, verified and signed, but has no key for them
    with LogStore(relay / "log.db") as store:
        carried = list(store.by_time("secret/tank"))
        membership = fold(store.by_time(COLLECTION), fleet)
    assert [e.raw for e in carried] == [e.raw for e in written]
    with pytest.raises(SealedError, match="carries these entries but may not read them"):
        Keyring(load_identity(relay / "identity.key")).open(membership, carried[0])
    values, said = csv_values(relay)
    assert values == [] and "3 entries of sealed collections were left out" in said
    # the reader opens them
    assert csv_values(reader)[0] == ["40.5", "41.5", "42.5"]
    assert idr != idd


def test_the_admin_commands_rotate_the_key_so_a_revoked_reader_gets_nothing_new(
    tmp_path: Path,
) -> None:
    """`lichen fleet revoke` of a reader writes a new generation sealed to the readers
    that remain; `lichen fleet group` giving a node the read group hands it the next."""
    admin, kept, revoked = make_nodes(tmp_path, 3, trust=False)
    run_lichen("fleet", "init", home=admin)
    fleet = admit(admin, {kept: "ops", revoked: "ops"})
    done = run_lichen("fleet", "rule", "secret/*", "--read", "ops", "--sealed", home=admin)
    assert "key generation 1 of secret/* sealed to 2 readers" in done.stdout
    assert "sealed to exactly its readers" in run_lichen("fleet", "rekey", home=admin).stdout
    done = run_lichen("fleet", "revoke", node_id(revoked), home=admin)
    assert "key generation 2 of secret/* sealed to 1 readers" in done.stdout
    done = run_lichen("fleet", "group", node_id(admin), "--groups", "ops", home=admin)
    assert "key generation 3 of secret/* sealed to 2 readers" in done.stdout
    with LogStore(admin / "log.db") as store:
        membership = fold(store.by_time(COLLECTION), fleet)
    readers = [sorted(g.boxes) for g in membership.keys["secret/*"]]
    ka, kk, kr = (load_identity(h / "identity.key").node_id.key for h in (admin, kept, revoked))
    assert readers == [sorted([kk, kr]), [kk], sorted([ka, kk])]
    rules = json.loads(run_lichen("fleet", "rules", "--json", home=admin).stdout)["rules"]
    assert rules == [{"collection": "secret/*", "write": None, "read": ["ops"], "carry": None,
                      "sealed": True, "key_generations": 3, "set_by": node_id(admin),
                      "ts": rules[0]["ts"]}]  # fmt: skip
