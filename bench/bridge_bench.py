"""``bridge``: Lichen's board-to-cloud delivery side by side with a Mosquitto
bridge with persistence (``bench/bridge_peer.py``), the same readings, both
measured in the same run.

* end to end: the uplink benchmark's reading batches (10 readings each) from
  the board until the cloud has them — for Lichen, ``lichen cloud``'s
  acknowledgement of the whole feed (``uplink_bench._end_to_end``); for the
  bridge, from the publisher's first document into the board's Mosquitto
  until the cloud's subscriber has received every one;
* backlog: the drain benchmark's outage (10 sensors at 1 Hz, one reading per
  batch; 24 h, ``--quick`` 1 h) produced while the cloud is down, then the
  time from the cloud up to the last document (bridge) or acknowledgement
  (Lichen); the board's bytes on disk per reading with that backlog held
  (Lichen's log, Mosquitto's persistence snapshot), and the board
  Mosquitto's RSS holding it;
* loss: a bridge whose ``max_queued_messages`` is half the backlog, and how
  many documents reach the cloud after the outage.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from agent.identity import Identity

from .bridge_peer import CloudCounter, bridged_brokers, documents, snapshot_bytes
from .common import Result, status_kib
from .uplink_bench import _broker, _end_to_end, build_log, publish

__all__ = ["bench_bridge"]

SENSORS = 10
SMALL_QUEUE = 1_000  # the loss case's max_queued_messages


def _lichen(tmp: Path, entries: int, per_entry: int) -> tuple[float, int]:
    """Seconds until ``lichen cloud`` acknowledged a board log of ``entries``
    batches, and the log's bytes on disk."""
    (tmp / "board").mkdir(parents=True)
    identity = Identity.generate()
    build_log(tmp / "board" / "log.db", identity, entries=entries, per_entry=per_entry,
              sensors=SENSORS)  # fmt: skip
    disk = sum(f.stat().st_size for f in (tmp / "board").glob("log.db*"))
    with _broker(tmp / "broker") as broker:
        return _end_to_end(tmp, broker, identity, entries), disk


def _wait_bridged(board: object, counter: CloudCounter) -> None:
    """Until a probe document crossed the bridge (it is connected)."""
    publish(board, documents(-1, 0, per_entry=1, sensors=SENSORS))
    counter.wait_for(1, timeout=30)
    counter.reset()


def _bridge(tmp: Path, entries: int, backlog: int) -> dict[str, float]:
    with bridged_brokers(tmp, max_queued=2 * backlog) as (board, cloud):
        start_kib = status_kib(board.pid, "VmRSS")
        counter = CloudCounter(cloud)
        _wait_bridged(board, counter)
        # the publisher's own limit: the same documents into one broker, no bridge
        direct_s = publish(cloud, documents(0, entries, per_entry=10, sensors=SENSORS))
        started = time.perf_counter()
        publish(board, documents(0, entries, per_entry=10, sensors=SENSORS))
        live_s = counter.wait_for(entries) - started
        counter.close()
        cloud.stop()  # the outage: the board goes on producing
        produce_s = publish(board, documents(0, backlog, per_entry=1, sensors=SENSORS), 3600)
        disk = snapshot_bytes(board)
        rss_kib = status_kib(board.pid, "VmRSS")
        cloud.start()
        up = time.perf_counter()
        counter = CloudCounter(cloud)
        drain_s = counter.wait_for(backlog) - up
        duplicates = counter.received - len(counter.seen)
        counter.close()
        hwm_kib = status_kib(board.pid, "VmHWM")
    return {"live_s": live_s, "direct_s": direct_s, "produce_s": produce_s,
            "drain_s": drain_s, "disk": disk, "start_kib": start_kib, "rss_kib": rss_kib,
            "hwm_kib": hwm_kib, "duplicates": duplicates}  # fmt: skip


def _delivered_past_queue(tmp: Path, produced: int) -> int:
    """Documents that reach the cloud after an outage during which ``produced``
    were published into a bridge holding at most ``SMALL_QUEUE``."""
    with bridged_brokers(tmp, max_queued=SMALL_QUEUE) as (board, cloud):
        counter = CloudCounter(cloud)
        _wait_bridged(board, counter)
        counter.close()
        cloud.stop()
        publish(board, documents(0, produced, per_entry=1, sensors=SENSORS))
        cloud.start()
        counter = CloudCounter(cloud)
        counter.wait_for(min(produced, SMALL_QUEUE), timeout=60)
        time.sleep(3.0)  # any more would come now: the bridge sent its queue already
        counter.close()
        return len(counter.seen)


def bench_bridge(quick: bool) -> list[Result]:
    entries = 5_000 if quick else 40_000  # the uplink benchmark's sizes
    hours = 1 if quick else 24  # the drain benchmark's outage
    backlog = hours * 3600 * SENSORS
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lichen_live_s, _ = _lichen(tmp / "lichen-live", entries, per_entry=10)
        lichen_drain_s, lichen_disk = _lichen(tmp / "lichen-drain", backlog, per_entry=1)
        bridge = _bridge(tmp / "bridge", entries, backlog)
        delivered = _delivered_past_queue(tmp / "small", 2 * SMALL_QUEUE)
    mib = 1024.0
    return [
        Result("bridge", "readings/s end to end (10 per batch): Lichen",
               entries * 10 / lichen_live_s, "r/s", "Mosquitto bridge",
               entries * 10 / bridge["live_s"], ""),
        Result("bridge", "bridge: documents/s end to end (10 readings each)",
               entries / bridge["live_s"], "d/s", "paho into one broker",
               entries / bridge["direct_s"], ""),
        Result("bridge", f"{hours} h backlog ({backlog} readings) drained: Lichen",
               lichen_drain_s, "s", "Mosquitto bridge", bridge["drain_s"], ""),
        Result("bridge", "board bytes on disk per reading, backlog held: Lichen",
               lichen_disk / backlog, "B", "Mosquitto bridge", bridge["disk"] / backlog, ""),
        Result("bridge", "bridge: board Mosquitto RSS holding the backlog",
               bridge["rss_kib"] / mib, "MiB", "at start-up", bridge["start_kib"] / mib, ""),
        Result("bridge", "bridge: board Mosquitto peak RSS (VmHWM)",
               bridge["hwm_kib"] / mib, "MiB", "at start-up", bridge["start_kib"] / mib, ""),
        Result("bridge", "bridge: backlog produced into the board's broker",
               backlog / bridge["produce_s"], "r/s", "outage rate", SENSORS, ""),
        Result("bridge", "bridge: duplicates delivered after the outage",
               bridge["duplicates"], "", "backlog", backlog, ""),
        Result("bridge", f"bridge: delivered after outage, max_queued_messages {SMALL_QUEUE}",
               delivered, "", "produced", 2 * SMALL_QUEUE, ""),
    ]  # fmt: skip
