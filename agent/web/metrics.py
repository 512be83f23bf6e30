"""``/metrics``: the node's status snapshot in the Prometheus text exposition
format (version 0.0.4), for Prometheus, VictoriaMetrics, Telegraf's
``inputs.prometheus`` or Grafana Agent to scrape.

Everything comes from what the agent already computed for its status snapshot
(:class:`~agent.node.StatusLoop`), the peer book and the disk of the home;
nothing is read from the log here. Each family is written as::

    # HELP lichen_sensor_readings_total Readings the sensor delivered.
    # TYPE lichen_sensor_readings_total counter
    lichen_sensor_readings_total{sensor="climate",plugin="sim",collection="readings/climate"} 42

Counters end in ``_total``; times are Unix seconds (``…_timestamp_seconds``);
label values are escaped (``\\``, ``"`` and newlines), HELP texts too (``\\`` and
newlines). A value the snapshot does not have (no uplink, no gossip) leaves its
family out rather than reporting a made-up zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTENT_TYPE", "Family", "escape_help", "escape_label", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


@dataclass
class Family:
    """One metric family: a name, its type, its help, its samples."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: Any, **labels: str) -> None:
        """Add a sample; a value that is not a number (None: not known) is left out."""
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            self.samples.append((labels, float(value)))

    def render(self) -> str:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{self.name}{{{inner}}} {_number(value)}" if inner
                         else f"{self.name} {_number(value)}")  # fmt: skip
        return "\n".join(lines) + "\n"


class _Families:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def __call__(self, name: str, kind: str, help: str) -> Family:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = Family(f"lichen_{name}", kind, help)
        return family

    def render(self) -> str:
        return "".join(f.render() for f in self.families.values() if f.samples)


def _seconds(ms: Any) -> float | None:
    return ms / 1000 if isinstance(ms, int | float) and not isinstance(ms, bool) else None


def render_metrics(
    status: Mapping[str, Any],
    *,
    name: str = "",
    peers: Sequence[Mapping[str, Any]] = (),
    disk: tuple[int, int] | None = None,
    http: Mapping[str, int] | None = None,
    now_ms: int | None = None,
) -> str:
    """The exposition of one status snapshot. ``peers``: peer book records;
    ``disk``: ``(free, total)`` bytes of the home's file system; ``http``: the
    server's counters."""
    m = _Families()
    node = str(status.get("node_id", ""))
    m("info", "gauge", "This node: its id and name (always 1).").add(1, node_id=node, name=name)
    m("start_timestamp_seconds", "gauge", "When the agent started.").add(
        _seconds(status.get("started_at_ms"))
    )
    updated = status.get("updated_at_ms")
    if now_ms is not None and isinstance(updated, int):
        m("status_age_seconds", "gauge", "Age of the status snapshot these numbers are from.").add(
            max(0, now_ms - updated) / 1000
        )
    _log(m, status.get("log") or {})
    _sensors(m, status.get("sensors") or [])
    _sync(m, status.get("sync"), peers)
    _uplink(m, status.get("uplink"))
    if disk is not None:
        m("disk_free_bytes", "gauge", "Free bytes on the file system of the node's home.").add(
            disk[0]
        )
        m("disk_size_bytes", "gauge", "Size in bytes of the file system of the node's home.").add(
            disk[1]
        )
    if http is not None:
        m("http_requests_total", "counter", "HTTP requests served.").add(http.get("requests"))
        m("http_refused_total", "counter", "HTTP requests refused (no token, wrong host).").add(
            http.get("refused")
        )
        m("http_streams", "gauge", "Live pages (event streams) open now.").add(http.get("streams"))
    return m.render()


#: (family, type, help, key of the snapshot's table); a ``…_timestamp_seconds``
#: family takes a ``…_ms`` value
Metric = tuple[str, str, str, str]

_LOG: tuple[Metric, ...] = (
    ("log_entries", "gauge", "Entries held in the log (every feed).", "entries"),
    ("log_bytes", "gauge", "Bytes of entries held in the log.", "bytes"),
    ("readings_stored_total", "counter", "Readings stored since the agent started.",
     "readings_stored"),
    ("readings_pending", "gauge", "Readings waiting for the next flush.", "readings_pending"),
    ("readings_dropped_total", "counter", "Readings dropped: a full buffer between flushes.",
     "readings_dropped"),
    ("readings_rejected_total", "counter", "Readings refused as not storable.",
     "readings_rejected"),
    ("log_commits_total", "counter", "Transactions the log's writer committed.", "commits"),
    ("log_write_errors_total", "counter", "Flushes the store failed to take (disk full …).",
     "write_errors"),
)  # fmt: skip


def _add_all(
    m: _Families, table: Iterable[Metric], source: Mapping[str, Any], **labels: str
) -> None:
    """One sample of each family of ``table``, from ``source``'s keys."""
    for name, kind, text, key in table:
        value = source.get(key)
        if name.endswith("_timestamp_seconds"):
            value = _seconds(value)
        m(name, kind, text).add(value, **labels)


def _log(m: _Families, log: Mapping[str, Any]) -> None:
    _add_all(m, _LOG, log)


_SENSOR_COUNTERS = (
    ("readings", "sensor_readings_total", "Readings the sensor delivered."),
    ("sample_errors", "sensor_sample_errors_total", "Samples that failed (the sensor raised)."),
    ("restarts", "sensor_restarts_total", "Times the sensor was restarted after a failure."),
    ("refused", "sensor_refused_total", "Readings refused as invalid."),
    ("rate_limited", "sensor_rate_limited_total", "Readings dropped by the rate limit."),
)


def _sensors(m: _Families, sensors: Iterable[Mapping[str, Any]]) -> None:
    for s in sensors:
        labels = {
            "sensor": str(s.get("name", "")),
            "plugin": str(s.get("plugin", "")),
            "collection": str(s.get("collection", "")),
        }
        m("sensor_up", "gauge", "1 if the sensor runs, 0 if it failed or stopped.").add(
            s.get("state") == "running", **labels
        )
        for key, name, text in _SENSOR_COUNTERS:
            m(name, "counter", text).add(s.get(key), **labels)
        m("sensor_last_reading_timestamp_seconds", "gauge", "When the sensor last read.").add(
            _seconds(s.get("last_reading_ms")), **labels
        )


_SYNC: tuple[Metric, ...] = (
    ("peers_known", "gauge", "Peers in the peer book.", "peers_known"),
    ("sync_sessions_completed_total", "counter", "Sync sessions that completed.",
     "sessions_completed"),
    ("sync_sessions_failed_total", "counter", "Sync sessions that failed.", "sessions_failed"),
    ("sync_last_timestamp_seconds", "gauge", "When a sync last completed.", "last_sync_ms"),
)  # fmt: skip
_PEER: tuple[Metric, ...] = (
    ("peer_last_sync_timestamp_seconds", "gauge", "When a sync with the peer last ended.",
     "last_sync_ms"),
    ("peer_last_sync_ok", "gauge", "1 if the last sync with the peer succeeded.",
     "last_sync_ok"),
    ("peer_entries_received_total", "counter", "Entries received from the peer.",
     "entries_received"),
    ("peer_entries_sent_total", "counter", "Entries sent to the peer.", "entries_sent"),
)  # fmt: skip


def _sync(m: _Families, sync: Mapping[str, Any] | None, peers: Sequence[Mapping[str, Any]]) -> None:
    if sync:
        _add_all(m, _SYNC, sync)
        m("sync_sessions_open", "gauge", "Sync sessions open now.").add(
            len(sync.get("sessions") or [])
        )
    for p in peers:
        _add_all(m, _PEER, p, peer=str(p.get("node", "")))


_UPLINK: tuple[Metric, ...] = (
    ("uplink_connected", "gauge", "1 if an uplink is connected to its broker.", "connected"),
    ("uplink_pruned_entries_total", "counter", "Entries pruned after the cloud's ack.",
     "pruned_entries"),
)  # fmt: skip
_BACKLOG: tuple[Metric, ...] = (
    ("uplink_backlog_entries", "gauge", "Entries the cloud has not acknowledged.", "entries"),
    ("uplink_backlog_bytes", "gauge", "Bytes of entries the cloud has not acknowledged.",
     "bytes"),
    ("uplink_oldest_unacked_age_seconds", "gauge", "Age of the oldest unacknowledged entry.",
     "oldest_unacked_age_s"),
)  # fmt: skip
_DROPPED: tuple[Metric, ...] = (
    ("storage_dropped_entries_total", "counter", "Entries dropped to stay within the quota.",
     "entries"),
    ("storage_dropped_bytes_total", "counter", "Bytes dropped to stay within the quota.",
     "bytes"),
)  # fmt: skip


def _uplink(m: _Families, uplink: Mapping[str, Any] | None) -> None:
    if not uplink:
        return
    _add_all(m, _UPLINK, uplink)
    _add_all(m, _BACKLOG, uplink.get("backlog") or {})
    last_ack = (("uplink_last_ack_timestamp_seconds", "gauge",
                 "When the cloud last acknowledged.", "at_ms"),)  # fmt: skip
    _add_all(m, last_ack, uplink.get("last_ack") or {})
    _add_all(m, _DROPPED, uplink.get("dropped") or {})
    for u in uplink.get("uplinks") or []:
        m("uplink_sent_entries_total", "counter", "Entries the uplink sent.").add(
            u.get("sent_entries"), uplink=str(u.get("name", ""))
        )
