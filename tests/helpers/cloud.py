"""Cloud test helpers: signed feeds of reading batches, an MQTT test client, and
``lichen cloud`` as a real process (stopped by PID)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.clock import pack
from agent.cloud_feed import TIME_COLLECTION
from agent.entry import Entry, sign_entry
from agent.identity import Identity, NodeId
from agent.readings import FieldSpec, Reading, encode_reading_batch
from agent.uplink.wire import DROPS_COLLECTION, DropRecord, drop_body

__all__ = [
    "CloudProcess",
    "Feed",
    "TestClient",
    "ack_seqs",
    "feed",
    "http_get",
    "make_cloud_home",
    "retained_ack",
    "start_cloud",
]

LICHEN = Path(sys.executable).with_name("lichen")
BASE_MS = 1_760_000_000_000
FIELDS = {"temperature": FieldSpec("°C", 0.01), "humidity": FieldSpec("%", 0.1)}


def readings_body(seq: int, per_entry: int = 3) -> dict[str, Any]:
    """A reading batch of ``per_entry`` readings, 1 s apart, timed from ``seq``."""
    start = BASE_MS + seq * 10_000
    readings = [
        Reading(start + i * 1000, {"temperature": 20 + seq + i / 100, "humidity": 40.5})
        for i in range(per_entry)
    ]
    return encode_reading_batch(readings, FIELDS)


@dataclass
class Feed:
    """A node's signed feed, built entry by entry (any body, chained)."""

    identity: Identity
    entries: list[Entry] = field(default_factory=list)

    @property
    def node(self) -> str:
        return str(self.identity.node_id)

    @property
    def author(self) -> bytes:
        return self.identity.node_id.key

    def add(self, collection: str = "readings/climate", body: Any = None, **kw: Any) -> Entry:
        seq = len(self.entries) + 1
        prev = self.entries[-1].hash if self.entries else None
        entry = sign_entry(
            self.identity,
            seq=seq,
            prev=prev,
            ts=pack(BASE_MS + seq * 10_000 + 5_000),
            collection=collection,
            body=readings_body(seq) if body is None else body,
            **kw,
        )
        self.entries.append(entry)
        return entry

    def add_drops(self, ranges: dict[str, list[tuple[int, int]]]) -> Entry:
        record = DropRecord("disk quota", ranges, sum(b - a + 1 for r in ranges.values()
                            for a, b in r), 0, {"readings/climate": 1})  # fmt: skip
        return self.add(DROPS_COLLECTION, drop_body(record))

    def raws(self, *seqs: int) -> list[bytes]:
        return [self.entries[s - 1].raw for s in seqs]


def feed(identity: Identity, n: int) -> Feed:
    out = Feed(identity)
    for _ in range(n):
        out.add()
    return out


def node_of(raw: bytes) -> str:
    from agent.entry import decode_entry

    return str(NodeId(decode_entry(raw, max_size=len(raw), strict=False).author))


class TestClient:
    """A paho MQTT 5 client for tests: publishes and collects what it receives."""

    __test__ = False

    def __init__(self, broker_port: int, client_id: str = "", host: str = "127.0.0.1") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.received: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_message = lambda _c, _u, m: self.received.put(
            (m.topic, bytes(m.payload), bool(m.retain))
        )
        self.client.connect(host, broker_port, 30)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        result, _mid = self.client.subscribe(topic, qos=1)
        assert result == 0

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> tuple[str, bytes, bool]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no matching MQTT message arrived in time")
            try:
                item = self.received.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(*item):
                return item

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@dataclass
class CloudProcess:
    home: Path
    process: subprocess.Popen[str]
    log_file: Path

    @property
    def status_file(self) -> Path:
        return self.home / "run" / "status.json"

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.status_file.read_text()))

    @property
    def http(self) -> str:
        return f"http://{self.status()['cloud']['http']}"

    def current(self) -> bool:
        """The status file is this process's (not a previous run's)."""
        status = self.status()
        return bool(status["pid"] == self.process.pid and status["state"] == "running")

    def ready(self) -> bool:
        status = self.status()["cloud"]
        return self.current() and bool(status["broker"]["connected"] and status["sink_ready"])

    def health(self) -> dict[str, Any]:
        """``GET /health``: live counters (status.json is rewritten every 2 s)."""
        _code, body, _ = http_get(self.http + "/health")
        return dict(json.loads(body))

    def log(self) -> str:
        return self.log_file.read_text()

    def wait(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"lichen cloud exited {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(OSError, ValueError, KeyError):
                last = predicate()
                if last:
                    return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


@contextlib.contextmanager
def start_cloud(
    home: Path, *args: str, wait: bool = True, prefix: Iterable[str] = ()
) -> Iterator[CloudProcess]:
    """``lichen --home HOME cloud ARGS…`` with the HTTP API on a free port; waits
    (unless ``wait=False``) until it is connected to the broker and its sink is ready.
    ``prefix``: a command that runs it (``taskset -c 0``, which keeps its PID)."""
    home.mkdir(parents=True, exist_ok=True)
    log_file = home.parent / f"{home.name}.log"
    env = dict(os.environ)
    env.pop("LICHEN_HOME", None)
    with log_file.open("w") as out:
        process = subprocess.Popen(
            [*prefix, str(LICHEN), "--home", str(home), "cloud", "--http", "127.0.0.1:0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    cloud = CloudProcess(home, process, log_file)
    try:
        if wait:
            cloud.wait(cloud.ready, what="the cloud to connect")
        else:
            cloud.wait(cloud.current, what="the cloud to start")
        yield cloud
    finally:
        cloud.stop()


def make_cloud_home(
    path: Path,
    cloud_toml: str = "",
    identity: Identity | None = None,
    *,
    trust: Iterable[str] = (),
) -> Identity:
    """A cloud home made by hand: identity, ``[node] role = "cloud"``, a ``[cloud]``
    table with ``cloud_toml`` and the boards it ``trust``s, as ``lichen trust add``
    records them (the log is created by ``lichen cloud``)."""
    from agent.home import Home
    from agent.identity import save_identity
    from agent.mesh.trust import TrustStore

    path.mkdir(parents=True, exist_ok=True)
    for node in trust:
        TrustStore(Home(path).trust_file).add(node, "test board")
    identity = identity or Identity.generate()
    save_identity(identity, path / "identity.key")
    (path / "lichen.toml").write_text(
        f'[node]\nname = "{path.name}"\nrole = "cloud"\n\n[cloud]\n{cloud_toml}\n'
    )
    return identity


def ack_seqs(payload: bytes, cloud: bytes | None = None) -> dict[str, int]:
    """{feed node id: seq} of an ack payload, every entry verified (and by ``cloud``);
    the time beacon that comes with the acknowledgements is checked and skipped."""
    from agent.cloud.core import acked_feed
    from agent.entry import decode_entry, verify_entry
    from agent.uplink.wire import decode_entry_batch

    out = {}
    for raw in decode_entry_batch(payload):
        entry = decode_entry(raw)
        verify_entry(entry)
        assert cloud is None or entry.author == cloud
        if entry.collection == TIME_COLLECTION:
            continue
        found = acked_feed(entry)
        assert found is not None
        out[str(NodeId(found[0]))] = found[1]
    return out


def retained_ack(broker_port: int, topic: str, cloud: bytes | None, want: dict[str, int]) -> None:
    """A *fresh* subscriber gets the retained acknowledgement with ``want`` in it
    (a new subscriber each try, so what it gets is what the broker retained)."""
    deadline = time.monotonic() + 20
    seen: object = None
    while time.monotonic() < deadline:
        client = TestClient(broker_port)
        try:
            client.subscribe(topic)
            with contextlib.suppress(AssertionError):
                _topic, payload, retain = client.wait_for(lambda t, p, r: t == topic, 1.0)
                seen = (ack_seqs(payload, cloud), retain)
                if seen == (want, True):
                    return
        finally:
            client.close()
        time.sleep(0.2)
    raise AssertionError(f"no retained acknowledgement {want} on {topic}; last: {seen}")
