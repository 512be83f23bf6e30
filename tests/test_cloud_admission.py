"""Who the cloud stores for, with a real Mosquitto broker and `lichen cloud` as a
real process: any broker client can publish on any ``up`` topic.

* By default only boards the cloud trusts (``lichen trust add`` on the cloud's
  home) are stored; a stranger's batches are refused and counted, and get no
  acknowledgement.
* A batch on another board's topic never moves that board's retained
  acknowledgement.
* A board's quota: past ``[cloud] board_quota`` its entries are refused with
  the reason logged and counted; what was stored stays, and is acknowledged.
* A cloud that knows its fleet (``[cloud] fleet``) admits the members besides
  its trust store, and refuses a stranger's entries, a revoked member's above
  its revocation's cut and a member's of a collection its groups may not write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.fleet import COLLECTION, fleet_id_of, format_fleet_id, op_body
from agent.store.log_store import LogStore
from agent.uplink.wire import Topics, encode_entry_batch

from .conftest import run_lichen, seeded_identity
from .helpers.broker import Broker
from .helpers.cloud import Feed, TestClient, feed, make_cloud_home, retained_ack, start_cloud

pytestmark = pytest.mark.slow

FLEET = "farm"


def retained_payload(broker: Broker, topic: str) -> bytes | None:
    """What a fresh subscriber gets retained on ``topic`` (None: nothing)."""
    client = TestClient(broker.port)
    try:
        client.subscribe(topic)
        try:
            _t, payload, retain = client.wait_for(lambda t, _p, _r: t == topic, 1.5)
        except AssertionError:
            return None
        assert retain
        return payload
    finally:
        client.close()


def judged(cloud: Any, messages: int) -> Any:
    """Wait until the status snapshot shows ``messages`` messages judged."""

    def done() -> dict[str, Any] | None:
        s: dict[str, Any] = cloud.status()["cloud"]
        return s if s["messages"] >= messages and s["queued"] == 0 else None

    return cloud.wait(done, what=f"{messages} messages judged")


def test_only_boards_the_cloud_trusts_are_stored(tmp_path: Path, mosquitto: Broker) -> None:
    home = tmp_path / "cloud"
    board, stranger = feed(seeded_identity(70), 3), feed(seeded_identity(71), 3)
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        # a fresh cloud trusts nobody, and says how to fix it
        assert "no board is trusted" in cloud.log() and "trust add" in cloud.log()
        run_lichen("trust", "add", board.node, "--label", "greenhouse", home=home)
        client = TestClient(mosquitto.port)
        try:
            client.publish(
                Topics(FLEET, stranger.node).up, encode_entry_batch(stranger.raws(1, 2, 3))
            )
            client.publish(Topics(FLEET, board.node).up, encode_entry_batch(board.raws(1, 2, 3)))
        finally:
            client.close()
        retained_ack(mosquitto.port, Topics(FLEET, board.node).ack, None, {board.node: 3})
        status = judged(cloud, 2)
        assert status["entries_stored"] == 3, "a stranger's entries were stored"
        assert status["rejected_by_kind"] == {"untrusted": 3}
        assert retained_payload(mosquitto, Topics(FLEET, stranger.node).ack) is None
        shown = json.loads(run_lichen("status", "--json", home=home).stdout)["cloud"]
        assert {f["node_id"] for f in shown["feeds"]} == {board.node}
        lines = [line for line in cloud.log().splitlines() if "msg=rejected" in line]
        assert len(lines) == 1 and "kind=untrusted" in lines[0] and "count=3" in lines[0]
        assert "lichen trust add" in lines[0]


def test_a_batch_on_another_boards_topic_never_moves_its_retained_ack(
    tmp_path: Path, mosquitto: Broker
) -> None:
    home = tmp_path / "cloud"
    victim, relay, rogue = (feed(seeded_identity(72 + i), 3) for i in range(3))
    make_cloud_home(home, trust=[victim.node, relay.node])
    victim_up, victim_ack = Topics(FLEET, victim.node).up, Topics(FLEET, victim.node).ack
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        client = TestClient(mosquitto.port)
        try:
            client.publish(victim_up, encode_entry_batch(victim.raws(1, 2, 3)))
            retained_ack(mosquitto.port, victim_ack, None, {victim.node: 3})
            before = retained_payload(mosquitto, victim_ack)
            # a stranger publishes its own entries on the victim's topic
            client.publish(victim_up, encode_entry_batch(rogue.raws(1, 2, 3)))
            status = judged(cloud, 2)
            assert status["entries_stored"] == 3, "the rogue's entries were stored"
            assert retained_payload(mosquitto, victim_ack) == before
            # a trusted board's entries on the victim's topic (a relay) are stored;
            # the victim's topic still carries the victim's own acknowledgement
            client.publish(victim_up, encode_entry_batch(relay.raws(1, 2)))
            retained_ack(mosquitto.port, victim_ack, None, {victim.node: 3, relay.node: 2})
        finally:
            client.close()


def test_past_its_quota_a_boards_entries_are_refused_and_nothing_stored_is_lost(
    tmp_path: Path, mosquitto: Broker
) -> None:
    home = tmp_path / "cloud"
    board = feed(seeded_identity(75), 12)
    quota = sum(len(e.raw) for e in board.entries[:5]) + 10  # five entries fit, not six
    make_cloud_home(home, f'board_quota = "{quota}"', trust=[board.node])
    up, ack = Topics(FLEET, board.node).up, Topics(FLEET, board.node).ack
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        client = TestClient(mosquitto.port)
        try:
            client.publish(up, encode_entry_batch(board.raws(*range(1, 9))))
            retained_ack(mosquitto.port, ack, None, {board.node: 5})
            status = judged(cloud, 1)
            assert status["rejected_by_kind"] == {"quota": 3}
            line = next(x for x in cloud.log().splitlines() if "kind=quota" in x)
            assert "board_quota" in line and "count=3" in line
            # the board resends: what is stored is acknowledged again, the rest refused
            client.publish(up, encode_entry_batch(board.raws(*range(1, 13))))
            status = judged(cloud, 2)
            assert status["duplicates"] == 5 and status["entries_stored"] == 5
        finally:
            client.close()
        assert cloud.stop() == 0
    with LogStore(home / "log.db") as store:  # what was stored stays
        assert [e.seq for e in store.feed(board.author)] == [1, 2, 3, 4, 5]


def test_the_cloud_admits_its_fleets_members_and_applies_the_fleets_rules(
    tmp_path: Path, mosquitto: Broker
) -> None:
    home = tmp_path / "cloud"
    admin = Feed(seeded_identity(76))
    fleet = fleet_id_of(admin.add(COLLECTION, op_body("create", name="farm")))
    ops, field, stranger = (
        feed(seeded_identity(77), 5),
        feed(seeded_identity(78), 2),
        feed(seeded_identity(79), 2),
    )
    for board, groups in ((ops, ["ops"]), (field, ["field"])):
        admin.add(COLLECTION, op_body("add", fleet, board.author, role="member", groups=groups))
        admin.add(COLLECTION, op_body("approve", fleet, board.author))
    admin.add(COLLECTION, op_body("rule", fleet, collection="readings/*", write=["ops"]))
    document = [e.raw for e in admin.entries]
    make_cloud_home(home, f'fleet = "{format_fleet_id(fleet)}"')  # it trusts no board
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        assert "no board is trusted" not in cloud.log()
        client = TestClient(mosquitto.port)
        try:
            # a member uploads the fleet document it holds with its readings
            client.publish(
                Topics(FLEET, ops.node).up, encode_entry_batch([*document, *ops.raws(1, 2, 3)])
            )
            retained_ack(mosquitto.port, Topics(FLEET, ops.node).ack, None,
                         {ops.node: 3, admin.node: len(document)})  # fmt: skip
            client.publish(Topics(FLEET, stranger.node).up, encode_entry_batch(stranger.raws(1, 2)))
            client.publish(Topics(FLEET, field.node).up, encode_entry_batch(field.raws(1, 2)))
            judged(cloud, 3)
            revoke = admin.add(
                COLLECTION, op_body("revoke", fleet, ops.author, upto=3, reason="stolen")
            )
            client.publish(Topics(FLEET, admin.node).up, encode_entry_batch([revoke.raw]))
            judged(cloud, 4)
            client.publish(Topics(FLEET, ops.node).up, encode_entry_batch(ops.raws(3, 4, 5)))
            status = judged(cloud, 5)
        finally:
            client.close()
        assert status["rejected_by_kind"] == {"untrusted": 2, "rule": 2, "revoked": 2}
        assert status["entries_stored"] == len(document) + 3 + 1 and status["duplicates"] == 1
        assert status["fleet"]["revoked"] == 1 and status["fleet"]["rules"] == 1
        lines = {k: line for line in cloud.log().splitlines() if "msg=rejected" in line
                 for k in ("untrusted", "rule", "revoked") if f"kind={k}" in line}  # fmt: skip
        assert "nor a member of the fleet" in lines["untrusted"]
        assert "rule for 'readings/*'" in lines["rule"] and "lichen fleet group" in lines["rule"]
        assert "above seq 3" in lines["revoked"]
        assert cloud.stop() == 0
    with LogStore(home / "log.db") as store:  # the revoked member's entries up to its cut stay
        assert [e.seq for e in store.feed(ops.author)] == [1, 2, 3]
        assert list(store.feed(field.author)) == list(store.feed(stranger.author)) == []
