"""The Mosquitto bridge peer: board-to-cloud delivery as an edge deployment
without Lichen would do it, with the classic store and forward of MQTT.

The board runs its own Mosquitto with ``persistence true`` and a ``connection``
bridge to the cloud's Mosquitto: topics ``readings/#`` go out at QoS 1 with
``cleansession false``, so while the cloud is unreachable the bridge's
session queues them (up to ``max_queued_messages``, raised here above the
backlog), and the snapshot Mosquitto writes every ``autosave_interval`` (1 s,
as Lichen flushes its readings every second) keeps that queue on disk.
A board-side publisher (the application) sends each reading batch as one JSON
document; a subscriber at the cloud, with a persistent session of its own,
counts the documents that arrive (no storage, no checks: a transport's upper
bound).

Only Debian's ``mosquitto`` (``scripts/system-deps.sh``) and paho are used;
both brokers listen on free loopback ports and are stopped by PID.
Telegraf and Fluent Bit, the issue's other suggestions, are in neither
Debian bookworm, PyPI nor npm (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from agent.readings import Reading

from .uplink_bench import reading_batches

__all__ = ["CloudCounter", "bridged_brokers", "documents", "snapshot_bytes"]

BRIDGE_ID = "bench-board-bridge"
SUBSCRIBER_ID = "bench-cloud-subscriber"
TOPICS = "readings/#"
PREFIX = "fleet/bench/board-1/"  # where the bridge puts the board's topics at the cloud


def _bridge_config(cloud_port: int, max_queued: int) -> str:
    return "\n".join(
        [
            f"max_queued_messages {max_queued}",
            "set_tcp_nodelay true",
            "connection cloud",
            f"address 127.0.0.1:{cloud_port}",
            f'topic {TOPICS} out 1 "" {PREFIX}',
            "cleansession false",
            f"clientid {BRIDGE_ID}",
            "restart_timeout 1",
            "start_type automatic",
        ]
    )


@contextlib.contextmanager
def bridged_brokers(directory: Path, max_queued: int) -> Iterator[tuple[Any, Any]]:
    """``(board, cloud)``: two running Mosquittos (``tests.helpers.broker.Broker``),
    the board's bridging ``readings/#`` to the cloud's, both persistent; stopped
    by PID afterwards."""
    from tests.helpers.broker import start_broker

    with start_broker(
        directory / "cloud", extra=f"max_queued_messages {max_queued}\nset_tcp_nodelay true"
    ) as cloud:
        extra = _bridge_config(cloud.port, max_queued)
        with start_broker(directory / "board", extra=extra) as board:
            yield board, cloud


def documents(
    first: int, stop: int, *, per_entry: int, sensors: int
) -> Iterator[tuple[str, bytes]]:
    """``(topic, payload)``: the uplink benchmark's reading batches ``first`` to
    ``stop``, each one JSON document (values at their declared resolution,
    ``n`` numbering the batch)."""
    for n, (collection, batch) in enumerate(
        reading_batches(first, stop, per_entry=per_entry, sensors=sensors), start=first
    ):
        yield collection, _json(n, collection, batch)


def _json(n: int, collection: str, batch: list[Reading]) -> bytes:
    readings = [
        {"ts": r.ts_ms, "temperature": round(cast(float, r.values["temperature"]), 2),
         "humidity": round(cast(float, r.values["humidity"]), 1)}
        for r in batch
    ]  # fmt: skip
    return json.dumps({"n": n, "collection": collection, "readings": readings},
                      separators=(",", ":")).encode()  # fmt: skip


class CloudCounter:
    """A paho subscriber at the cloud (persistent session, QoS 1) counting the
    documents bridged from the board: distinct ``n`` and duplicates."""

    def __init__(self, cloud: Any) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.seen: set[int] = set()
        self.received = 0
        self.bytes = 0
        self._target = -1
        self._reached = threading.Event()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=SUBSCRIBER_ID, clean_session=False
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(cloud.host, cloud.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the cloud subscriber did not subscribe within 10 s")

    def _on_connect(self, client: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        client.subscribe(PREFIX + TOPICS, qos=1)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        n = json.loads(message.payload)["n"]
        with self._lock:
            self.received += 1
            self.bytes += len(message.payload)
            self.seen.add(n)
            if len(self.seen) >= self._target >= 0:
                self._reached.set()

    def wait_for(self, count: int, timeout: float = 3600.0) -> float:
        """Until ``count`` distinct documents arrived: ``time.perf_counter()`` then."""
        with self._lock:
            self._target = count
            if len(self.seen) >= count:
                self._reached.set()
        if not self._reached.wait(timeout):
            raise RuntimeError(f"{len(self.seen)} of {count} documents arrived in {timeout} s")
        return time.perf_counter()

    def reset(self) -> None:
        """Forget what arrived so far."""
        with self._lock:
            self.seen.clear()
            self.received = self.bytes = 0
            self._target = -1
            self._reached.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def snapshot_bytes(board: Any, timeout: float = 120.0) -> int:
    """Mosquitto's persistence file after a fresh snapshot (SIGUSR1 by PID)."""
    db = board.directory / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    os.kill(board.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not db.exists() or db.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto wrote no snapshot within {timeout} s")
        time.sleep(0.05)
    return int(db.stat().st_size)
