"""Uplink benchmarks, each a ratio against a limit measured in the same run.

* ``uplink``: entries per second from a board's log to a real Mosquitto
  (published and PUBACKed) against a raw paho QoS 1 publish loop of the same
  payloads with the same window to the same broker (target ≥ 0.8×), on a
  quiet machine and with a Python process spinning on the other core. Both
  publishing sides are timed from connected to the last PUBACK, in
  interleaved rounds. Then entries and readings per second acknowledged end
  to end by a real ``lichen cloud`` process, against the cloud's own ingest
  rate of the same batches (workers started on demand, as the role does;
  target ≥ 0.8×).
  (The cloud's own ingest rate is measured by :mod:`bench.cloud_bench`.)
* ``drain``: the backlog after a 24-hour outage (10 sensors at 1 Hz, one
  entry per sensor and second) drained end to end, against the raw publish
  loop's time for the same bytes; ``--quick`` simulates one hour.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.clock import HybridClock
from agent.config import parse_config
from agent.entry import decode_entry
from agent.home import Home
from agent.identity import Identity, load_identity
from agent.mesh.trust import TrustStore
from agent.node import Node
from agent.plugins import ConfiguredPlugin, configure_plugin
from agent.readings import FieldSpec, Reading, encode_reading_batch
from agent.runtime.uplinks import SWITCH_INTERVAL_S, UplinkRuntime
from agent.store.log_store import Draft, LogStore
from agent.uplink.wire import MAX_PAYLOAD, encode_entry_batch, split_batches

from .common import Result, other_core_busy

__all__ = [
    "bench_drain",
    "bench_uplink",
    "build_log",
    "publish",
    "reading_batches",
    "verify_rate",
]

LICHEN = Path(sys.executable).with_name("lichen")
WINDOW = 20
ROUNDS = 7  # of the raw loop and of the board's publishing, interleaved
FIELDS = {"temperature": FieldSpec("°C", 0.01), "humidity": FieldSpec("%", 0.1)}


def _broker(directory: Path) -> Any:
    from tests.helpers.broker import start_broker

    return start_broker(directory, persistence=False)


START_MS = 1_790_000_000_000


def reading_batches(
    first: int, stop: int, *, per_entry: int, sensors: int
) -> Iterator[tuple[str, list[Reading]]]:
    """Reading batches ``first`` to ``stop`` of a board: ``per_entry`` readings
    each, round robin over ``sensors`` collections, one second apart per
    collection (the peer benchmarks deliver these same readings)."""
    for i in range(first, stop):
        second, sensor = divmod(i, sensors)
        t0 = START_MS + second * 1000
        batch = [
            Reading(t0 + k * (1000 // per_entry),
                    {"temperature": 20 + (i % 97) / 10, "humidity": 40 + k % 7})
            for k in range(per_entry)
        ]  # fmt: skip
        yield f"readings/s{sensor}", batch


def build_log(path: Path, identity: Identity, *, entries: int, per_entry: int, sensors: int) -> int:
    """A board's log: ``entries`` reading batches (``reading_batches``)."""
    now = [START_MS]
    clock = HybridClock(wall=lambda: now[0])
    readings = 0
    with LogStore(path) as store:
        for first in range(0, entries, 5000):
            drafts = [
                Draft(collection, encode_reading_batch(batch, FIELDS))
                for collection, batch in reading_batches(
                    first, min(entries, first + 5000), per_entry=per_entry, sensors=sensors
                )
            ]
            readings += per_entry * len(drafts)
            now[0] = START_MS + (first // sensors) * 1000
            store.append(identity, clock, drafts)
    return readings


def raw_rate(broker: Any, raws: list[bytes]) -> float:
    """Entries per second of a raw paho QoS 1 publish loop of the same payloads,
    ``WINDOW`` in flight, until the last PUBACK."""
    payloads = [encode_entry_batch(b) for b in split_batches(raws, MAX_PAYLOAD)]
    return len(raws) / publish(broker, [("bench/raw/up", p) for p in payloads])


def publish(broker: Any, messages: Iterable[tuple[str, bytes]], timeout: float = 600) -> float:
    """Publish ``messages`` (topic, payload; any iterable, consumed as it goes)
    with paho at QoS 1, ``WINDOW`` in flight; the seconds until the last PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    slots = threading.Semaphore(WINDOW)
    done, last = threading.Event(), threading.Event()
    sent, acked = [0], [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(WINDOW)

    def on_publish(_c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        acked[0] += 1
        slots.release()
        if last.is_set() and acked[0] == sent[0]:
            done.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.perf_counter()
    for topic, payload in messages:
        slots.acquire()
        sent[0] += 1
        client.publish(topic, payload, qos=1)
    last.set()
    if acked[0] == sent[0]:
        done.set()
    done.wait(timeout)
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return elapsed


def verify_rate(raws: list[bytes]) -> float:
    """Raw Ed25519 verifications per second of ``raws``' signatures on one core
    (PyNaCl, nothing else: no decoding, no Python around it)."""
    from nacl.signing import VerifyKey

    from agent.entry import SIGNING_DOMAIN

    entries = [decode_entry(r) for r in raws]
    started = time.perf_counter()
    for e in entries:
        VerifyKey(e.author).verify(SIGNING_DOMAIN + e.content, e.signature)
    return len(entries) / (time.perf_counter() - started)


async def _run_board(
    home: Path,
    identity: Identity,
    broker: Any,
    *,
    until: Callable[[UplinkRuntime, list[Any]], bool],
    max_unacked: str,
    from_connect: bool = False,
    poll: float = 0.001,
    cloud: str | None = None,
) -> float:
    """The board's uplink runtime with the MQTT plugin, in this process: seconds
    until ``until(runtime, uplinks)`` holds (``uplinks``: the plugin instances),
    from the start or — ``from_connect``, as the raw loop's clock starts once it
    is connected — from the moment the uplink was connected (``until`` polled every
    ``poll`` seconds). ``cloud``: the node id whose acknowledgements count."""
    text = (
        f'[uplink]\nmax_unacked = "{max_unacked}"\nresend_after = 600\n'
        + (f'[retention]\nack_from = ["{cloud}"]\n' if cloud else "")
        + f'[[uplinks.mqtt]]\nname = "cloud"\nbroker = "{broker.url}"\nfleet = "bench"\n'
    )
    config = parse_config(text)
    uplinks: list[Any] = []
    links = [
        _recorded(configure_plugin("uplinks", p, i, t, "bench"), uplinks)
        for p, i, t in config.instances("uplinks")
    ]
    node = Node(home / "log.db", identity)
    await node.start()
    runtime = UplinkRuntime(config, node, links, state_dir=home)
    started = time.monotonic()
    runtime.start()
    try:
        while not until(runtime, uplinks):
            await asyncio.sleep(poll)
        if from_connect:  # stamped by the plugin itself: the pump may hold the loop a while
            started = uplinks[-1].stats.connected_at
        return time.monotonic() - started
    finally:
        await runtime.close()
        await node.close()


def _recorded(link: ConfiguredPlugin, into: list[Any]) -> ConfiguredPlugin:
    """``link`` with each instance the runtime makes of it appended to ``into``."""
    base: Any = link.cls

    class Recorded(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            into.append(self)

    return dataclasses.replace(link, cls=Recorded)


def _start_cloud(home: Path, broker: Any) -> subprocess.Popen[bytes]:
    from tests.helpers.broker import free_port

    return subprocess.Popen(
        [str(LICHEN), "--home", str(home), "cloud", "--broker", broker.url,
         "--http", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_cloud_ready(home: Path) -> None:
    deadline = time.monotonic() + 30
    while not (home / "run" / "status.json").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("lichen cloud did not start")
        time.sleep(0.1)
    time.sleep(0.5)


def _end_to_end(tmp: Path, broker: Any, identity: Identity, head: int) -> float:
    """Seconds from the board's uplink connected until the cloud acknowledged the
    whole feed (as the cloud's ingest rate is timed from its first message)."""
    cloud_home = tmp / "cloud"
    TrustStore(Home(cloud_home).trust_file).add(str(identity.node_id), "bench board")
    cloud = _start_cloud(cloud_home, broker)
    try:
        _wait_cloud_ready(cloud_home)
        key = identity.node_id.key
        cloud_id = str(load_identity(cloud_home / "identity.key").node_id)
        return asyncio.run(
            _run_board(
                tmp / "board", identity, broker, max_unacked="32MB", cloud=cloud_id,
                from_connect=True, poll=0.02,
                until=lambda rt, _uplinks: rt.reader.delivery.acked().get(key, 0) >= head,
            )
        )  # fmt: skip
    finally:
        cloud.terminate()
        cloud.wait(30)


def _round(tmp: Path, identity: Identity, broker: Any, raws: list[bytes]) -> tuple[float, float]:
    """One round: the raw loop's entries/s, then the board's seconds from connected
    until every entry is published and PUBACKed (as the raw loop ends)."""
    entries = len(raws)

    def published(_rt: UplinkRuntime, uplinks: list[Any]) -> bool:
        last = uplinks[-1] if uplinks else None
        return last is not None and last.stats.entries >= entries and not last.in_flight

    rate = raw_rate(broker, raws)
    seconds = asyncio.run(
        _run_board(tmp / "board", identity, broker, max_unacked="1GB", until=published,
                   from_connect=True)
    )  # fmt: skip
    return rate, seconds


def bench_uplink(quick: bool) -> list[Result]:
    from agent.cloud.ingest_workers import IngestWorkers

    from .cloud_bench import ingest_rate, messages_of

    entries = 5_000 if quick else 40_000
    per_entry = 10
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "board").mkdir()
        identity = Identity.generate()
        readings = build_log(tmp / "board" / "log.db", identity, entries=entries,
                             per_entry=per_entry, sensors=10)  # fmt: skip
        with LogStore(tmp / "board" / "log.db") as store:
            raws = [bytes(r) for (r,) in store.connection.execute("SELECT raw FROM entries")]
        with _broker(tmp / "broker") as broker:
            # Interleaved rounds, quiet and with the other core busy, the median of each.
            # With Mosquitto's defaults (Nagle on its PUBACKs) a QoS 1 loop is bound by
            # latency and now and then a run goes 2-3x faster (with set_tcp_nodelay, most
            # do): the median is the usual case.
            # Both sides run with the GIL switch interval the board's uplinks set.
            rounds: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            interval = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            for _ in range(ROUNDS):
                rounds[False].append(_round(tmp, identity, broker, raws))
                with other_core_busy():
                    rounds[True].append(_round(tmp, identity, broker, raws))
            sys.setswitchinterval(interval)
            e2e_s = _end_to_end(tmp, broker, identity, entries)
        ingest = ingest_rate(tmp / "ingest.db", messages_of(identity, raws), IngestWorkers())
    size = sum(len(r) for r in raws) / len(raws)
    note = f"{per_entry} readings, {size:.0f} B per entry"
    results = []
    for busy, label in ((False, "quiet"), (True, "other core busy")):
        raw = statistics.median(rate for rate, _s in rounds[busy])
        publish_s = statistics.median(s for _rate, s in rounds[busy])
        results.append(
            Result("uplink", f"published entries/s, {label} ({note})", entries / publish_s,
                   "e/s", f"raw paho QoS 1, {label}", raw, "≥ 0.8")
        )  # fmt: skip
    return [
        *results,
        Result("uplink", "acknowledged entries/s (end to end)", entries / e2e_s, "e/s",
               "cloud ingest, same batches", ingest, "≥ 0.8"),
        Result("uplink", "acknowledged readings/s (end to end)", readings / e2e_s, "r/s",
               "cloud ingest readings", ingest * per_entry, "≥ 0.8"),
    ]  # fmt: skip


def bench_drain(quick: bool) -> list[Result]:
    hours = 1 if quick else 24
    sensors = 10
    entries = hours * 3600 * sensors
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "board").mkdir()
        identity = Identity.generate()
        build_log(tmp / "board" / "log.db", identity, entries=entries, per_entry=1,
                  sensors=sensors)  # fmt: skip
        with LogStore(tmp / "board" / "log.db") as store:
            raws = [bytes(r) for (r,) in store.connection.execute("SELECT raw FROM entries")]
        with _broker(tmp / "broker") as broker:
            raw = raw_rate(broker, raws)
            del raws
            seconds = _end_to_end(tmp, broker, identity, entries)
    raw_seconds = entries / raw
    return [
        Result("drain", f"{hours} h outage backlog drained ({entries} entries)", seconds, "s",
               "raw publish of it", raw_seconds, ""),
        Result("drain", "drain time / outage time", seconds / (hours * 3600), "",
               "outage", 1.0, "≤ 0.05"),
    ]  # fmt: skip


if __name__ == "__main__":  # pragma: no cover - manual runs
    from .common import print_results

    quick = "--quick" in sys.argv
    print_results(bench_uplink(quick))
    os._exit(0)
