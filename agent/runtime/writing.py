"""Batched readings into the log: entries, the ``_sensors`` descriptions, and counts.

:class:`ReadingWriter` is the agent's part between the
:class:`~agent.batcher.ReadingBatcher` and the node's writer. Each flush turns
every collection's pending readings into entries (split to fit the entry cap),
writes a new version of the collection's ``_sensors`` document first when what
is known about its fields changed, and hands the newest reading of each stored
batch to the node's ``readings`` broadcast (uplinks that publish state). It
never raises for one collection's sake: a batch that cannot be encoded is
rejected (counted and logged), a reading too large for any entry is refused on
its sensor's count, and a batch the store failed to take (a full disk) is put
back for the next flush. At stop, :meth:`ReadingWriter.final_flush` retries for
a few seconds and counts what is still unwritten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..batcher import PendingBatch, ReadingBatcher, drafts_for
from ..logs import event
from ..readings import SENSORS_COLLECTION, describe_id
from ..store.log_store import Draft

if TYPE_CHECKING:
    from ..config import LogConfig
    from ..link_api import SensorReading
    from ..node import Node
    from ..plugins import ConfiguredSensor
    from .sensors import SensorRunner

__all__ = ["ReadingWriter", "latest_reading", "sensor_description"]

log = logging.getLogger("lichen.agent")

FINAL_FLUSH_S = 5.0


class ReadingWriter:
    """Writes what ``batcher`` holds into ``node``'s log; the readings of
    ``runners``' collections are described and refused on their sensor's count."""

    def __init__(
        self,
        node: Node,
        batcher: ReadingBatcher,
        runners: Sequence[SensorRunner],
        log_config: LogConfig,
        *,
        node_name: str = "",
    ) -> None:
        self.node, self.batcher, self.log_config = node, batcher, log_config
        #: written into the descriptions, so other nodes' exports can name this one
        self.node_name = node_name
        self._runners = {r.configured.collection: r for r in runners}
        self._described: dict[str, dict[str, Any]] = {}
        self.stored = 0  # readings
        self.entries_stored = 0
        self.rejected = 0
        #: readings still pending when the agent stopped (the store kept failing)
        self.unwritten = 0
        self.write_errors = 0
        self.last_write_error: str | None = None

    def _description(self, batch: PendingBatch) -> Draft | None:
        """A new version of the collection's ``_sensors`` document when what we
        know about it (plugin, interval, fields: units, resolution, class) changed."""
        runner = self._runners.get(batch.collection)
        body = sensor_description(batch, runner.configured if runner else None)
        if self.node_name:
            body["node"] = self.node_name
        if self._described.get(batch.collection) == body:
            return None
        doc_id = describe_id(batch.collection, str(self.node.identity.node_id))
        if self.node.started:
            current = self.node.reader.documents.get(SENSORS_COLLECTION, doc_id)
            if current is not None and current.body == body:
                self._described[batch.collection] = body
                return None
        self._described[batch.collection] = body
        return Draft(SENSORS_COLLECTION, body, doc_id)

    async def flush(self, batches: Sequence[PendingBatch] | None = None) -> int:
        """Write pending readings now; return how many readings were stored.

        Never raises for one collection's sake: a batch that cannot be encoded is
        rejected (counted and logged), and one the store failed to take (a full
        disk) is put back for the next flush."""
        if batches is None:
            batches = self.batcher.take_all()
        if not batches:
            return 0
        max_size = self.log_config.max_entry_size
        plans = []
        for batch in batches:
            try:
                drafts, too_large = drafts_for(batch, max_size)
            except (ValueError, TypeError, OverflowError) as exc:  # not storable at all
                self._reject(batch.collection, len(batch), str(exc))
                continue
            if too_large:
                self._too_large(batch.collection, too_large, max_size)
            if not drafts:
                continue
            description = self._description(batch)
            plans.append((batch, [description, *drafts] if description else drafts))
        if not plans:
            return 0
        groups = [drafts for _, drafts in plans]
        try:
            results: list[Any] = await self.node.writer.append_groups(groups)
        except Exception as exc:  # the store failed (disk full …): the whole flush
            results = [exc] * len(plans)
        stored = 0
        for (batch, drafts), result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):  # its description was not written either
                self._described.pop(batch.collection, None)
            if isinstance(result, ValueError):  # this batch can never be written: say so
                self._reject(batch.collection, len(batch), str(result))
            elif isinstance(result, BaseException):  # the store failed: keep and retry
                self.write_errors += 1
                self.last_write_error = str(result)
                self.batcher.put_back([batch])
                event(log, "write failed; will retry", logging.ERROR, error=str(result))
            else:
                stored += len(batch)
                self.entries_stored += len(drafts)
        self.stored += stored
        if stored:  # the log's growth is announced by the node's writer
            self.node.readings.publish(
                [self._latest(b) for (b, _), r in zip(plans, results, strict=True)
                 if not isinstance(r, BaseException) and len(b)]
            )  # fmt: skip
        return stored

    def _reject(self, collection: str, readings: int, error: str) -> None:
        self.rejected += readings
        event(
            log,
            "readings rejected",
            logging.ERROR,
            collection=collection,
            readings=readings,
            error=error,
        )

    def _too_large(self, collection: str, readings: int, max_size: int) -> None:
        """Readings each too large for one entry: refused, on their sensor's count."""
        problem = f"one reading does not fit an entry of {max_size} bytes (log.max_entry_size)"
        runner = self._runners.get(collection)
        if runner is None:
            self._reject(collection, readings, problem)
            return
        for _ in range(readings):
            runner.refuse(problem)

    def _latest(self, batch: PendingBatch) -> SensorReading:
        runner = self._runners.get(batch.collection)
        return latest_reading(batch, runner.configured if runner else None)

    async def final_flush(self) -> None:
        """Write everything pending; while the store fails (a full disk), retry for
        up to ``FINAL_FLUSH_S``. What is still pending then is counted and logged."""
        deadline = time.monotonic() + FINAL_FLUSH_S
        while True:
            try:
                await self.flush()
            except Exception as exc:
                event(log, "flush failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            if not self.batcher.pending or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        self.unwritten = self.batcher.pending
        if self.unwritten:
            event(
                log,
                "readings not written at stop",
                logging.ERROR,
                readings=self.unwritten,
                error=self.last_write_error,
            )


def sensor_description(batch: PendingBatch, configured: ConfiguredSensor | None) -> dict[str, Any]:
    """The body of the ``_sensors`` document describing a batch's collection: its
    fields (units, resolution, class) and, for a configured sensor, its plugin,
    name and interval."""
    body: dict[str, Any] = {
        "fields": {name: spec.describe() for name, spec in sorted(batch.fields.items())}
    }
    if configured is not None:
        body |= {
            "plugin": configured.plugin,
            "sensor": configured.name,
            "interval": configured.config.interval,
        }
    return body


def latest_reading(batch: PendingBatch, configured: ConfiguredSensor | None) -> SensorReading:
    """The newest reading of a stored batch, for uplinks that publish state."""
    from ..link_api import SensorReading

    ts_ms, values, quality = batch.newest()
    return SensorReading(
        collection=batch.collection,
        sensor=configured.name if configured else batch.collection.rpartition("/")[2],
        plugin=configured.plugin if configured else "",
        ts_ms=ts_ms,
        values=values,
        fields={name: spec.describe() for name, spec in batch.fields.items()},
        quality=quality,
    )
