"""The fleet with real `lichen` processes on loopback TCP: found, invite, join,
approve, sync without `trust add`, revoke — and the hostile cases: a replayed,
an expired and a wrong invite, a forged admin entry, a non-member dialling."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.fleet import COLLECTION, format_code, op_body, parse_fleet_id
from agent.identity import load_identity
from agent.store.log_store import Draft, LogStore

from .conftest import LICHEN, run_lichen
from .helpers.agents import (
    agent_state,
    can_connect,
    free_port,
    make_nodes,
    node_id,
    start,
    stop,
    wait_for,
)
from .test_gossip_processes import wait_converged

pytestmark = pytest.mark.slow

SAS = re.compile(r"^code: (\d{6})\b", re.M)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def tcp(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def invite(home: Path, *args: str) -> tuple[subprocess.Popen[str], Path, str]:
    """`lichen fleet invite ARGS` left waiting for its joiner; its output file and code."""
    out = home / f"invite-{time.monotonic_ns()}.out"
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    with out.open("w") as sink:
        process = subprocess.Popen(
            [str(LICHEN), "--home", str(home), "fleet", "invite", *args],
            stdout=sink, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
    found = wait_for(
        "the invite code",
        lambda: re.search(r"^code: ([A-Z2-7-]{23})", out.read_text(), re.M),
        process=process,
    )
    return process, out, found.group(1)


def join(home: Path, code: str, port: int) -> subprocess.CompletedProcess[str]:
    return run_lichen("fleet", "join", code, "--peer", tcp(port), home=home, check=False)


def members(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run_lichen("fleet", "members", "--json", home=home).stdout)
    return data


def held_seq(home: Path, author: str) -> int:
    """The head seq of ``author``'s feed in ``home``'s log (0 if none), read directly."""
    with LogStore(home / "log.db") as store:
        from agent.identity import NodeId

        head = store.head(NodeId.parse(author).key)
        return 0 if head is None else head.seq


def held_seqs(home: Path, author: str) -> list[int]:
    """The seqs of ``author``'s feed that ``home``'s log holds, ascending."""
    with LogStore(home / "log.db") as store:
        from agent.identity import NodeId

        return [e.seq for e in store.feed(NodeId.parse(author).key)]


def pending_fleet(home: Path) -> dict[str, Any] | None:
    """The ``fleet`` part of the agent's status once it shows a pending member."""
    fleet: dict[str, Any] = ((agent_state(home) or {}).get("sync") or {}).get("fleet") or {}
    return fleet if fleet.get("pending") == 1 else None


def sessions_with(home: Path, peer: str) -> list[dict[str, Any]]:
    state = agent_state(home) or {}
    return [s for s in ((state.get("sync") or {}).get("sessions") or []) if s["peer"] == peer]


def test_a_fleet_of_three_joins_syncs_without_trust_add_and_revokes(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, b, c = make_nodes(tmp_path, 3, trust=False)
    founded = run_lichen("fleet", "init", "--name", "test", home=a).stdout
    fleet = re.search(r"founded fleet (lf1\w+)", founded).group(1)  # type: ignore[union-attr]
    pa, pb, pc = free_port(), free_port(), free_port()
    running.append(start(a, "--listen", tcp(pa)))
    wait_for("A to listen", lambda: can_connect(pa), log=a / "agent.log", process=running[0])

    for joiner in (b, c):
        inviting, out, code = invite(a, "--expires", "5m")
        joined = join(joiner, code, pa)
        assert joined.returncode == 0, joined.stderr
        assert inviting.wait(timeout=30) == 0, out.read_text()
        shown_by_joiner = SAS.search(joined.stdout)
        shown_by_inviter = SAS.search(out.read_text())
        assert shown_by_joiner and shown_by_inviter, (joined.stdout, out.read_text())
        assert shown_by_joiner.group(1) == shown_by_inviter.group(1)
        assert f"joined fleet {fleet}" in joined.stdout
        assert json.loads((joiner / "state" / "fleet.json").read_text())["fleet"] == fleet

    ida, idb, idc = node_id(a), node_id(b), node_id(c)
    state = {m["node"]: m["state"] for m in members(a)["members"]}
    assert state == {ida: "approved", idb: "pending", idc: "pending"}
    run_lichen("fleet", "approve", idb, home=a)
    run_lichen("fleet", "approve", idc[:12], home=a)  # a unique start of the id will do
    assert {m["state"] for m in members(a)["members"]} == {"approved"}

    running.append(start(b, "--listen", tcp(pb), "--peer", tcp(pa)))
    running.append(start(c, "--listen", tcp(pc), "--peer", tcp(pb)))  # C meets only B
    for h in (b, c):
        assert "nobody is trusted yet" in run_lichen("trust", "list", home=h).stdout
    wait_converged([a, b, c], timeout=90)
    assert sessions_with(c, idb) or sessions_with(b, idc)

    # B, a plain member, writes a forged admin action into _fleet: it spreads, never counts
    with LogStore(b / "log.db") as store:
        from agent.clock import HybridClock

        fleet_raw = parse_fleet_id(fleet)
        forged = op_body("grant-admin", fleet_raw, load_identity(b / "identity.key").node_id.key)
        store.append(load_identity(b / "identity.key"), HybridClock(), [Draft(COLLECTION, forged)])
    ignored = wait_for(
        "A to hold and ignore B's forged entry",
        lambda: [i for i in members(a)["ignored"] if i["author"] == idb],
        timeout=30,
    )
    assert ignored[0]["reason"] == "signed by a node that is not an admin"
    assert {m["node"]: m["admin"] for m in members(a)["members"]}[idb] is False

    # revoke C: B, which C is talking to, ends C's session within seconds
    assert wait_for("a session between B and C", lambda: sessions_with(b, idc), timeout=30)
    revoked_at = time.monotonic()
    run_lichen("fleet", "revoke", idc, "--reason", "lost in the field", home=a)
    wait_for(
        "B to end its session with the revoked C",
        lambda: not sessions_with(b, idc) and not sessions_with(c, idb),
        timeout=30,
        log=b / "agent.log",
    )
    ended_after = time.monotonic() - revoked_at
    assert "peer no longer trusted" in (b / "agent.log").read_text()
    c_member = {m["node"]: m for m in members(a)["members"]}[idc]
    assert c_member["state"] == "revoked" and c_member["reason"] == "lost in the field"

    # C goes on writing; B gets none of it: C's dials are refused, with the reason
    held = held_seq(b, idc)
    wait_for("C to write on", lambda: held_seq(c, idc) > held + 2, timeout=30)
    refused = run_lichen("sync", tcp(pb), home=c, check=False)
    assert refused.returncode == 1, refused.stdout
    wait_for(
        "B to refuse C as revoked",
        lambda: "was revoked from the fleet: lost in the field" in (b / "agent.log").read_text(),
        timeout=10,
    )
    assert held_seq(b, idc) == held
    print(f"revocation ended the B–C session after {ended_after:.1f} s")


def test_hostile_invites_and_a_non_member_are_refused_with_their_reasons(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, b, d = make_nodes(tmp_path, 3, trust=False)
    run_lichen("fleet", "init", home=a)
    pa = free_port()
    # at debug level: the agent tells a host's repeated failed handshakes only there
    running.append(start(a, "--listen", tcp(pa), "--log-level", "debug"))
    wait_for("A to listen", lambda: can_connect(pa), log=a / "agent.log", process=running[0])
    log = a / "agent.log"

    inviting, _out, code = invite(a, "--expires", "5m")
    assert join(b, code, pa).returncode == 0
    assert inviting.wait(timeout=30) == 0
    replay = join(d, code, pa)  # the same code again, by another node
    assert replay.returncode == 1
    assert f"was already used by {node_id(b)}" in replay.stderr
    assert not (d / "state" / "fleet.json").exists()

    data = json.loads(
        run_lichen("fleet", "invite", "--expires", "1s", "--no-wait", "--json", home=a).stdout
    )
    wait_for("the invite to expire", lambda: time.time() * 1000 > data["expires_ms"] + 50)
    expired = join(d, data["code"], pa)
    assert expired.returncode == 1 and "expired" in expired.stderr, expired.stderr

    wrong = join(d, format_code(os.urandom(10)), pa)  # well-formed, but no invite of A's
    assert wrong.returncode == 1 and "a wrong code" in wrong.stderr, wrong.stderr
    wait_for("A to log the wrong code", lambda: "wrong or unknown invite code" in log.read_text())

    typo = join(d, code[:-1] + ("A" if code[-1] != "A" else "B"), pa)
    assert typo.returncode == 2 and "mistyped" in typo.stderr

    # a non-member that trusts A dials it: A refuses it, naming the fleet
    run_lichen("trust", "add", node_id(a), home=d)
    stranger = run_lichen("sync", tcp(pa), home=d, check=False)
    assert stranger.returncode == 1
    wait_for("A to refuse the non-member", lambda: "is not in fleet lf1" in log.read_text())
    assert {m["node"] for m in members(a)["members"]} == {node_id(a), node_id(b)}


def test_a_pending_members_writes_are_refused_until_approved_then_fetched_whole(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, b = make_nodes(tmp_path, 2, trust=False)
    run_lichen("fleet", "init", home=a)
    pa, pb = free_port(), free_port()
    running.append(start(a, "--listen", tcp(pa)))
    wait_for("A to listen", lambda: can_connect(pa), log=a / "agent.log", process=running[0])
    inviting, _out, code = invite(a)
    assert join(b, code, pa).returncode == 0
    assert inviting.wait(timeout=30) == 0
    ida, idb = node_id(a), node_id(b)
    fleet = wait_for("A's status to show the pending member", lambda: pending_fleet(a))
    assert fleet["joined"] == 1 and fleet["members"] == 2 and fleet["revoked"] == 0

    running.append(start(b, "--listen", tcp(pb), "--peer", tcp(pa)))
    # B syncs at once (it receives A's entries) but A stores none of B's
    wait_for("B to receive A's readings", lambda: held_seq(b, ida) > 3, timeout=60)
    wait_for("B to write a few entries", lambda: held_seq(b, idb) > 3, timeout=60)
    wait_for("a session between A and B", lambda: sessions_with(a, idb), timeout=30)
    assert held_seq(a, idb) == 0

    run_lichen("fleet", "approve", idb, home=a)
    target = held_seq(b, idb)
    # an entry B writes after the approval may come first, live, in the old
    # session: the head alone says nothing of the refused ones before it
    whole = list(range(1, target + 1))
    wait_for("A to fetch B's feed from its first entry",
             lambda: held_seqs(a, idb)[:target] == whole,
             timeout=60, log=a / "agent.log")  # fmt: skip
    assert "syncing again from the start" in (a / "agent.log").read_text()


def past(home: Path, author: str, seq: int) -> bool:
    return held_seq(home, author) > seq


def write_own(home: Path, collection: str, n: int) -> list[int]:
    """``n`` entries of ``collection`` appended to ``home``'s own feed (its agent
    not running); their seqs."""
    from agent.clock import HybridClock

    identity = load_identity(home / "identity.key")
    with LogStore(home / "log.db") as store:
        drafts = [Draft(collection, {"note": i}) for i in range(n)]
        return [e.seq for e in store.append(identity, HybridClock(), drafts)]


def test_a_collection_rule_keeps_readers_and_writers_to_their_groups(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    a, b, c = make_nodes(tmp_path, 3, trust=False)
    run_lichen("fleet", "init", home=a)
    ida, idb, idc = node_id(a), node_id(b), node_id(c)
    run_lichen("fleet", "group", ida, "--groups", "ops", home=a)  # the founder is not exempt
    shown = run_lichen("fleet", "rule", "secret*", "--write", "ops", "--read", "ops", home=a)
    assert "rule for secret*: write groups ops; read groups ops" in shown.stdout
    secret_a = write_own(a, "secret/plans", 3)
    pa, pb, pc = free_port(), free_port(), free_port()
    running.append(start(a, "--listen", tcp(pa)))
    wait_for("A to listen", lambda: can_connect(pa), log=a / "agent.log", process=running[0])
    for joiner, groups in ((b, "ops"), (c, "field")):  # the joiner gets the rule with the fleet
        inviting, out, code = invite(a, "--groups", groups)
        assert join(joiner, code, pa).returncode == 0
        assert inviting.wait(timeout=30) == 0, out.read_text()
    run_lichen("fleet", "approve", idb, home=a)
    run_lichen("fleet", "approve", idc, home=a)
    rules = json.loads(run_lichen("fleet", "rules", "--json", home=a).stdout)
    assert rules["rules"][0]["read"] == ["ops"] and rules["groups"]["ops"] == sorted([ida, idb])
    secret_b, secret_c = write_own(b, "secret/plans", 3), write_own(c, "secret/plans", 3)

    running.append(start(b, "--listen", tcp(pb), "--peer", tcp(pa)))
    running.append(start(c, "--listen", tcp(pc), "--peer", tcp(pa), "--peer", tcp(pb)))
    # everyone's readings flow past the secret entries (C's too: A and B store them)
    for home, author in ((a, idb), (a, idc), (b, ida), (b, idc), (c, ida), (c, idb)):
        wait_for(f"{home.name} to hold {author[:12]}'s readings past seq 8",
                 functools.partial(past, home, author, 8),
                 timeout=90, log=home / "agent.log")  # fmt: skip
    # B, in ops, reads and writes secret*: A's entries reached it and its own reached A
    assert set(secret_a) <= set(held_seqs(b, ida))
    assert set(secret_b) <= set(held_seqs(a, idb))
    # C, in field only, never receives them, and its own are stored by nobody
    assert not set(secret_a) & set(held_seqs(c, ida))
    assert not set(secret_b) & set(held_seqs(c, idb))
    assert not set(secret_c) & set(held_seqs(a, idc))
    assert not set(secret_c) & set(held_seqs(b, idc))


def test_a_cloud_that_joined_the_fleet_admits_its_approved_members_bundles(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    """A cloud home (``lichen fleet join`` run on it, no board trusted) admits an
    approved member's entries from a bundle (``lichen bundle import``, the cloud's
    ingestion) and refuses a non-member's, naming the reason."""
    from .helpers.cloud import make_cloud_home

    a, b, stranger = make_nodes(tmp_path, 3, trust=False)
    cloud = tmp_path / "cloud"
    make_cloud_home(cloud)
    LogStore(cloud / "log.db").close()  # as the first `lichen cloud` leaves it
    run_lichen("fleet", "init", home=a)
    pa = free_port()
    running.append(start(a, "--listen", tcp(pa)))
    wait_for("A to listen", lambda: can_connect(pa), log=a / "agent.log", process=running[0])
    for joiner in (b, cloud):  # B is approved before the cloud joins: its document says so
        inviting, _out, code = invite(a)
        assert join(joiner, code, pa).returncode == 0
        assert inviting.wait(timeout=30) == 0
        if joiner == b:
            run_lichen("fleet", "approve", node_id(b), home=a)
    for home in (b, stranger):
        write_own(home, "notes", 2)
        run_lichen("bundle", "export", str(tmp_path / f"{home.name}.lcb"), home=home)
    stored = run_lichen("bundle", "import", str(tmp_path / f"{b.name}.lcb"), "--json", home=cloud)
    assert json.loads(stored.stdout)["refused"] == 0
    refused = run_lichen("bundle", "import", str(tmp_path / f"{stranger.name}.lcb"), "--json",
                         home=cloud, check=False)  # fmt: skip
    report = json.loads(refused.stdout)
    assert report["stored"] == 0 and report["refused"] == report["entries"] > 0
    assert "nor a member of the fleet" in " ".join(report["reasons"])
    assert held_seqs(cloud, node_id(b))[-2:] == [
        held_seq(b, node_id(b)) - 1,
        held_seq(b, node_id(b)),
    ]
    assert held_seqs(cloud, node_id(stranger)) == []
