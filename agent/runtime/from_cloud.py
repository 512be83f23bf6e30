"""What a board does with its clouds' beacons and commands, whichever path they took.

A cloud's ``_time`` beacons and ``_commands`` are entries of its own feed
(:mod:`agent.cloud_feed`): they reach the board's log by the MQTT ack topic,
gossip, a bundle or a mule. :class:`FromCloud` reads every such entry newly
stored — told by the node's "log changed" broadcast, and once a second for
what another process (``lichen bundle import``) stored:

* beacons go to the :class:`~agent.runtime.timekeeper.Timekeeper`, which
  takes those of the accepted clouds (``[retention] ack_from``); its
  ``_clock`` records are appended to this node's feed. Beacons stored before
  the agent started are not looked at: when they arrived is unknown, so they
  are stale by rule (``docs/time.md``);
* commands go to the :class:`~agent.commands.CommandJudge`, and those it
  finds executable to ``apply`` (the agent's :meth:`~agent.runtime.agent.Agent.apply_settings`);
  each command entry gets one ``_commands_result`` document. Commands are
  read from the start of the log at every start: one that came by bundle
  while the agent was stopped is acted on (or refused as expired) then, and
  one with a result already is skipped.

Beacons are decided before the commands stored with them, so a command's
expiry is judged by a clock the same message corrected.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..aio import cancel_and_wait, wait_event
from ..cloud_feed import COMMAND_RESULTS_COLLECTION, COMMANDS_COLLECTION, TIME_COLLECTION
from ..commands import REFUSALS, CommandJudge, result_body, result_doc_id
from ..entry import Entry
from ..errors import LichenError
from ..logs import event
from ..store.log_store import Draft
from .timekeeper import Timekeeper, mono_ms

if TYPE_CHECKING:
    from ..node import LogChange, Node

__all__ = ["FromCloud"]

log = logging.getLogger("lichen.clock")
POLL_S = 1.0


#: applies a command's settings; raises ValueError (or LichenError) naming what is wrong
Apply = Callable[[Mapping[str, Any]], None]


class FromCloud:
    """Reads the clouds' beacons and commands as they are stored, and acts on them."""

    def __init__(
        self,
        node: Node,
        timekeeper: Timekeeper,
        clouds: Callable[[], frozenset[bytes]],
        apply: Apply | None = None,
    ) -> None:
        self.node, self.timekeeper, self.clouds = node, timekeeper, clouds
        self.apply = apply
        self.wake = asyncio.Event()
        self.judge = CommandJudge(str(node.identity.node_id))
        self.decided: set[str] = set()  # result documents held (command entries acted on)
        self.commands: Counter[str] = Counter(dict.fromkeys(("executed", *REFUSALS), 0))
        self.last_command: dict[str, Any] | None = None
        self._cursor = 0
        self._commands_cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """Beacons from now on (what is in the log already arrived at an unknown
        time); commands from the start of the log."""
        reader = self.node.reader
        self._cursor = reader.last_change()
        self._load_results()
        self._unsubscribe = self.node.changed.subscribe(self._changed)
        self._task = asyncio.create_task(self._run(), name="from-cloud")

    def _load_results(self) -> None:
        """The command entries this node recorded a result for, and the ids acted on."""
        me, after = self.node.identity.node_id.key, 0
        while True:
            entries, after2 = self.node.reader.stored_since((COMMAND_RESULTS_COLLECTION,), after)
            for entry in entries:
                if entry.author != me or entry.doc_id is None:
                    continue
                self.decided.add(entry.doc_id)
                body = entry.body if isinstance(entry.body, Mapping) else {}
                if body.get("reason") not in ("untrusted", "not_for_me", "malformed"):
                    ident = body.get("id")
                    if isinstance(ident, str):
                        self.judge.acted.add(ident)
            if not entries:
                return
            after = after2

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    def _changed(self, _change: LogChange) -> None:
        self.wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.scan()
            except LichenError as exc:
                event(log, "reading the clouds' entries failed", logging.ERROR, error=str(exc))
            await wait_event(self.wake, POLL_S)
            self.wake.clear()

    async def scan(self) -> int:
        """Act on what was stored since the last scan (beacons first); returns how
        many entries of the clouds' collections were read."""
        seen = 0
        reader, clock = self.node.reader, self.node.clock
        while True:
            entries, self._cursor = reader.stored_since((TIME_COLLECTION,), self._cursor)
            if not entries:
                break
            seen += len(entries)
            received = mono_ms()
            records = self.timekeeper.consider(
                [(e, received) for e in entries], self.clouds(), clock.physical_now
            )
            if records:
                await self.node.writer.append_many(records)
        while True:
            entries, self._commands_cursor = reader.stored_since(
                (COMMANDS_COLLECTION,), self._commands_cursor
            )
            if not entries:
                return seen
            seen += len(entries)
            for entry in entries:
                await self._command(entry)

    async def _command(self, entry: Entry) -> None:
        """Judge, apply and record one command entry (once: a result is kept)."""
        doc_id = result_doc_id(entry)
        if doc_id in self.decided:
            return
        now = self.node.clock.physical_now()
        verdict = self.judge.judge(entry, self.clouds(), now)
        failed = None
        if verdict.execute and verdict.command is not None:
            try:
                if self.apply is None:
                    raise ValueError("this node takes no commands")
                self.apply(verdict.command.set)
            except (ValueError, LichenError) as exc:
                failed = str(exc)
        body = result_body(entry, verdict, now, failed=failed)
        await self.node.writer.append_many([Draft(COMMAND_RESULTS_COLLECTION, body, doc_id)])
        self.decided.add(doc_id)
        self.commands[body["reason"] or "executed"] += 1
        self.last_command = body
        level = logging.WARNING if body["outcome"] == "refused" else logging.INFO
        event(log, f"command {body['outcome']}", level, id=body["id"], cloud=body["cloud"],
              seq=entry.seq, reason=body["reason"], detail=body["detail"])  # fmt: skip

    def status(self) -> dict[str, Any]:
        return {"counts": dict(self.commands), "last": self.last_command}
