"""`lichen cloud` as a real process against a real Mosquitto broker: boards'
signed batches in, retained signed acknowledgements out, the HTTP API,
`lichen status`, a rogue client, a broker that is down at start, and a
persistent session that keeps what arrived while the cloud was away."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from agent.identity import load_identity
from agent.uplink.wire import MAX_PAYLOAD, Topics, encode_entry_batch

from .conftest import run_lichen, seeded_identity
from .helpers.broker import Broker
from .helpers.cloud import (
    TestClient,
    feed,
    http_get,
    make_cloud_home,
    retained_ack,
    start_cloud,
)

pytestmark = pytest.mark.slow

FLEET = "farm"


def test_boards_batches_are_stored_acked_and_served(tmp_path: Path, mosquitto: Broker) -> None:
    home = tmp_path / "cloud"
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        me = load_identity(home / "identity.key").node_id
        # the home was created like `lichen init` does, for a cloud node
        assert f"node id      {me}" in cloud.log()
        assert 'role = "cloud"' in (home / "lichen.toml").read_text()
        boards = [feed(seeded_identity(40 + i), 6) for i in range(2)]
        for board in boards:  # the cloud stores only boards it trusts
            run_lichen("trust", "add", board.node, home=home)
        publisher = TestClient(mosquitto.port)
        try:
            a, b = boards
            # a: out of order, with a duplicate; b: in one batch
            publisher.publish(Topics(FLEET, a.node).up, encode_entry_batch(a.raws(4, 5, 6)))
            publisher.publish(Topics(FLEET, a.node).up, encode_entry_batch(a.raws(1, 2, 3, 4)))
            publisher.publish(
                Topics(FLEET, b.node).up, encode_entry_batch(b.raws(1, 2, 3, 4, 5, 6))
            )
            for board in boards:
                retained_ack(mosquitto.port, Topics(FLEET, board.node).ack, me.key, {board.node: 6})
        finally:
            publisher.close()
        cloud.wait(lambda: cloud.status()["cloud"]["entries_stored"] == 12, what="12 stored")
        status = cloud.status()["cloud"]
        assert status["duplicates"] == 1 and status["entries_rejected"] == 0

        code, body, _ = http_get(cloud.http + "/health")
        health = json.loads(body)
        assert code == 200 and health["ok"] and health["broker"]["connected"]
        assert health["sink"] == "sqlite" and health["entries_stored"] == 12
        assert health["last_ingest_ms"] > 0

        code, body, _ = http_get(cloud.http + "/v1/feeds")
        feeds = {f["node_id"]: f for f in json.loads(body)["feeds"]}
        for board in boards:
            f = feeds[board.node]
            assert (f["entries"], f["head_seq"], f["acked_seq"], f["contiguous_seq"]) == (
                6,
                6,
                6,
                6,
            )

        a = boards[0]
        code, body, headers = http_get(
            f"{cloud.http}/v1/readings?node={a.node}&collection=readings/climate"
            "&from=1760000020000&to=1760000040000"
        )
        rows = json.loads(body)["readings"]
        assert code == 200 and headers["Transfer-Encoding"] == "chunked"
        assert [r["seq"] for r in rows] == [2, 2, 2, 3, 3, 3]
        assert rows[0] == {
            "ts_ms": 1760000020000,
            "node": a.node,
            "collection": "readings/climate",
            "seq": 2,
            "values": {"humidity": 40.5, "temperature": 22.0},
            "quality": None,
        }
        code, body, headers = http_get(f"{cloud.http}/v1/readings.csv")
        assert code == 200 and headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(body.decode())))
        assert table[0] == ["ts_ms", "node", "collection", "humidity", "temperature", "quality"]
        assert len(table) == 1 + 2 * 6 * 3
        code, body, _ = http_get(f"{cloud.http}/v1/readings?limit=2")
        assert json.loads(body)["count"] == 2 and json.loads(body)["limit_reached"]

        for url, status_code, name in [
            ("/v1/readings?from=soon", 400, "from"),
            ("/v1/readings?node=lc1bogus", 400, "node"),
            ("/v1/readings?limit=-3", 400, "limit"),
            ("/v1/readings?x=1", 400, "x"),
        ]:
            code, body, _ = http_get(cloud.http + url)
            assert code == status_code and json.loads(body)["parameter"] == name, body
        assert http_get(cloud.http + "/v2/nothing")[0] == 404

        # lichen status of the cloud home: per feed, what the cloud holds
        shown = json.loads(run_lichen("status", "--json", home=home).stdout)
        assert shown["role"] == "cloud" and shown["agent"]["role"] == "cloud"
        held = {f["node_id"]: f for f in shown["cloud"]["feeds"]}
        assert set(held) == {a.node, boards[1].node}
        assert all(f["entries"] == 6 and f["head_seq"] == 6 and f["acked_seq"] == 6
                   for f in held.values())  # fmt: skip
        assert "feeds" in shown and "agent" in shown  # the usual keys are still there
        text = run_lichen("status", home=home).stdout
        assert "cloud     running" in text and "acked" in text

        assert cloud.stop() == 0
    final = json.loads((home / "run" / "status.json").read_text())
    assert final["state"] == "stopped"
    assert "cloud stopped" in cloud.log()


def test_a_rogue_client_is_refused_and_logged_while_honest_traffic_flows(
    tmp_path: Path, mosquitto: Broker
) -> None:
    honest = feed(seeded_identity(50), 4)
    stranger = feed(seeded_identity(51), 2)
    home = tmp_path / "cloud"
    me = make_cloud_home(home, f'accept = "trusted"\nauthors = ["{honest.node}"]')
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        rogue, board = TestClient(mosquitto.port, "rogue"), TestClient(mosquitto.port, "board")
        try:
            up = Topics(FLEET, honest.node).up
            forged = bytearray(honest.entries[1].raw)
            forged[-3] ^= 0xFF  # in the signature
            rogue.publish(up, b"\x00not cbor at all")
            rogue.publish(up, encode_entry_batch([b"z" * (MAX_PAYLOAD + 1)]))
            rogue.publish(up, encode_entry_batch([bytes(forged)]))
            rogue.publish(up, encode_entry_batch([honest.entries[2].raw[:-5]]))
            rogue.publish(Topics(FLEET, stranger.node).up, encode_entry_batch(stranger.raws(1, 2)))
            board.publish(up, encode_entry_batch(honest.raws(1, 2, 3, 4)))
            retained_ack(mosquitto.port, Topics(FLEET, honest.node).ack, me.node_id.key,
                         {honest.node: 4})  # fmt: skip
        finally:
            rogue.close()
            board.close()

        def judged() -> dict[str, Any] | None:
            # status.json is a periodic snapshot: wait until it shows every message judged
            s: dict[str, Any] = cloud.status()["cloud"]
            done = s["entries_rejected"] >= 4 and s["messages_rejected"] >= 2
            return s if done and s["entries_stored"] >= 4 and s["queued"] == 0 else None

        status = cloud.wait(judged, what="every message judged")
        assert status["entries_stored"] == 4
        assert status["messages_rejected"] == 2  # garbage and the oversized batch
        assert status["rejected_by_kind"] == {
            "batch": 2, "signature": 1, "malformed": 1, "untrusted": 2,
        }  # fmt: skip
        log = cloud.log()
        rejected = [line for line in log.splitlines() if "msg=rejected" in line]
        assert len(rejected) == 5  # one line per message and kind
        assert all(f"topic=lichen/v1/{FLEET}/" in line and "reason=" in line for line in rejected)
        assert any("not valid CBOR" in line for line in rejected)
        assert any("limit is 131072" in line for line in rejected)
        assert any("kind=signature" in line and "entry=0" in line for line in rejected)
        assert any("kind=malformed" in line and "truncated" in line for line in rejected)
        (untrusted,) = [line for line in rejected if "kind=untrusted" in line]
        assert stranger.node in untrusted and "count=2" in untrusted and "trust add" in untrusted
        # nothing is redelivered forever: the broker holds no unacknowledged message
        assert status["queued"] == 0
        assert re.search(r"msg=rejected", log)
        _code, body, _ = http_get(cloud.http + "/v1/feeds")
        nodes = {f["node_id"] for f in json.loads(body)["feeds"] if not f["own"]}
        assert nodes == {honest.node}


def test_broker_down_at_start_and_a_persistent_session(tmp_path: Path, mosquitto: Broker) -> None:
    home = tmp_path / "cloud"
    board = feed(seeded_identity(60), 6)
    up = Topics(FLEET, board.node).up
    me = make_cloud_home(home, trust=[board.node])

    def stored(n: int) -> None:
        cloud.wait(lambda: cloud.health()["entries_stored"] == n, what=f"{n} stored")

    mosquitto.stop()
    with start_cloud(home, "--broker", mosquitto.url, wait=False) as cloud:
        cloud.wait(lambda: cloud.status()["cloud"]["broker"]["last_error"], what="a failure")
        assert not cloud.status()["cloud"]["broker"]["connected"]
        mosquitto.start()  # same port: the cloud's backoff finds it
        cloud.wait(cloud.ready, timeout=15, what="reconnection")
        client = TestClient(mosquitto.port)
        client.publish(up, encode_entry_batch(board.raws(1, 2)))
        client.close()
        stored(2)
        mosquitto.kill()  # a broker crash while running
        mosquitto.start()
        cloud.wait(lambda: cloud.status()["cloud"]["broker"]["connects"] == 2, what="reconnect")
        client = TestClient(mosquitto.port)
        client.publish(up, encode_entry_batch(board.raws(3, 4)))
        client.close()
        stored(4)
        assert cloud.stop() == 0
    # the cloud is away: its session keeps what arrives meanwhile
    client = TestClient(mosquitto.port)
    client.publish(up, encode_entry_batch(board.raws(5, 6)))
    client.close()
    with start_cloud(home, "--broker", mosquitto.url) as cloud:
        assert cloud.status()["cloud"]["broker"]["session_present"]
        stored(2)
        retained_ack(mosquitto.port, Topics(FLEET, board.node).ack, me.node_id.key, {board.node: 6})
        cloud.process.send_signal(signal.SIGINT)
        assert cloud.process.wait(20) == 0


def test_bad_configuration_and_flags_stop_with_the_key_named(tmp_path: Path) -> None:
    home = tmp_path / "bad-config"
    make_cloud_home(home, 'ack_interval = "fast"')
    result = run_lichen("cloud", home=home, check=False)
    assert result.returncode == 2
    assert "[cloud] ack_interval = 'fast'" in result.stderr and "Fix:" in result.stderr
    home = tmp_path / "bad-flag"
    make_cloud_home(home)
    result = run_lichen("cloud", "--group", "a/b", home=home, check=False)
    assert result.returncode == 2 and "--group = 'a/b'" in result.stderr
    result = run_lichen("cloud", "--broker", "tcp://x", home=home, check=False)
    assert result.returncode == 2 and "--broker" in result.stderr and "mqtt://" in result.stderr


def test_an_unreachable_database_is_retried_and_health_says_so(
    tmp_path: Path, mosquitto: Broker
) -> None:
    home = tmp_path / "cloud"
    make_cloud_home(home)
    dsn = "host=127.0.0.1 port=1 user=nobody dbname=nothing connect_timeout=2"
    with start_cloud(home, "--broker", mosquitto.url, "--postgres", dsn, wait=False) as cloud:
        cloud.wait(lambda: cloud.status()["cloud"]["sink_errors"] >= 1, what="a sink error")
        status = cloud.status()["cloud"]
        assert status["sink"] == "postgres" and not status["sink_ready"]
        assert "cannot connect" in status["last_sink_error"]
        assert "password" not in json.dumps(status)
        code, body, _ = http_get(cloud.http + "/health")
        health = json.loads(body)
        assert code == 503 and not health["ok"] and not health["sink_ok"]
        assert "sink unavailable; retrying" in cloud.log()
        assert cloud.stop() == 0


def test_the_cloud_over_tls_with_its_own_client_certificate(tmp_path: Path) -> None:
    """The cloud connects through the same MQTT layer (and TLS set-up) as a
    board: certificates from `lichen cloud-cert`, the lines it prints for a
    cloud home pasted as they are, a broker that requires a client certificate."""
    from .helpers.broker import free_port, start_broker

    pki = tmp_path / "pki"
    run_lichen("cloud-cert", "ca", "--out", str(pki / "ca"))
    run_lichen("cloud-cert", "server", "--ca", str(pki / "ca"), "--out", str(pki / "broker"),
               "--host", "127.0.0.1")  # fmt: skip
    board = feed(seeded_identity(65), 2)
    home = tmp_path / "cloud"
    me = make_cloud_home(home, trust=[board.node])
    printed = run_lichen("cloud-cert", "client", "--ca", str(pki / "ca"), "--out",
                         str(pki / "cloud"), home=home).stdout  # fmt: skip
    port = free_port()
    lines = [line.strip() for line in printed.splitlines()]
    table = lines[lines.index("[cloud]") + 1 :]
    keys = "\n".join(x for x in table if x.startswith("tls_"))
    config = home / "lichen.toml"
    config.write_text(config.read_text() + keys + "\n")
    served = pki / "broker"
    extra = "\n".join([f"listener {port} 127.0.0.1", f"cafile {served / 'ca.pem'}",
                       f"certfile {served / 'server.pem'}", f"keyfile {served / 'server.key'}",
                       "require_certificate true"])  # fmt: skip
    with start_broker(tmp_path / "tls-broker", extra=extra) as broker:
        with start_cloud(home, "--broker", f"mqtts://127.0.0.1:{port}") as cloud:
            assert cloud.status()["cloud"]["broker"]["url"] == f"mqtts://127.0.0.1:{port}"
            client = TestClient(broker.port)  # the plain listener of the same broker
            try:
                client.publish(Topics(FLEET, board.node).up, encode_entry_batch(board.raws(1, 2)))
            finally:
                client.close()
            retained_ack(broker.port, Topics(FLEET, board.node).ack, me.node_id.key,
                         {board.node: 2})  # fmt: skip
        # a cloud that does not trust the broker's CA says so, and keeps trying
        run_lichen("cloud-cert", "ca", "--out", str(pki / "stranger"))
        config.write_text(config.read_text().replace(str(pki / "cloud" / "ca.pem"),
                                                     str(pki / "stranger" / "ca.pem")))  # fmt: skip
        with start_cloud(home, "--broker", f"mqtts://127.0.0.1:{port}", wait=False) as cloud:
            error = cloud.wait(lambda: cloud.status()["cloud"]["broker"]["last_error"],
                               what="the TLS failure")  # fmt: skip
            assert "certificate" in error and "refused" in error, error
