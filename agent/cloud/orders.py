"""The cloud's commands still to deliver, and what the boards answered.

``lichen cloud command`` writes a ``_commands`` entry into the cloud home's log
(:mod:`agent.commands`); the boards answer with ``_commands_result``
documents (``CLOUD/SEQ``) that come back like any of their entries.
:class:`OpenCommands` follows both in the log as they are stored, so the role
puts every command a board has not answered, and that has not expired, in
the acknowledgement messages to that board — delivery by MQTT; gossip,
bundles and mules carry the same entries by their own ways. With the
PostgreSQL sink the boards' answers are in the database, not this log: a
command is then sent until it expires (a board acts on it once anyway).

:func:`command_outcomes` is what ``lichen cloud command status`` shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..cloud_feed import COMMAND_RESULTS_COLLECTION, COMMANDS_COLLECTION
from ..commands import Command, parse_command
from ..entry import Entry
from ..identity import NodeId
from ..store.log_store import LogStore

__all__ = ["MAX_PER_MESSAGE", "CommandOutcome", "OpenCommands", "command_outcomes"]

#: the most commands put in one acknowledgement message (the newest first)
MAX_PER_MESSAGE = 16


@dataclass
class _Open:
    command: Command
    seq: int
    raw: bytes
    waiting: set[str]  # boards that have not answered


class OpenCommands:
    """Commands of this cloud (``own``) not answered by every target, from its log."""

    def __init__(self, own: bytes) -> None:
        self.own = own
        self._prefix = f"{NodeId(own)}/"
        self._cursor = 0
        self._open: dict[int, _Open] = {}  # by the command entry's seq
        self._answered: set[tuple[int, str]] = set()  # (seq, board) answered before seen

    def refresh(self, reader: LogStore) -> None:
        """Read what was stored since the last call."""
        while True:
            entries, self._cursor = reader.stored_since(
                (COMMANDS_COLLECTION, COMMAND_RESULTS_COLLECTION), self._cursor
            )
            if not entries:
                return
            for entry in entries:
                self._take(entry)

    def _take(self, entry: Entry) -> None:
        if entry.collection == COMMANDS_COLLECTION:
            if entry.author != self.own:
                return
            try:
                command = parse_command(entry)
            except ValueError:
                return
            waiting = {n for n in command.to if (entry.seq, n) not in self._answered}
            if waiting:
                self._open[entry.seq] = _Open(command, entry.seq, entry.raw, waiting)
            return
        doc = entry.doc_id or ""
        if not doc.startswith(self._prefix) or not doc[len(self._prefix) :].isdigit():
            return
        seq, board = int(doc[len(self._prefix) :]), str(NodeId(entry.author))
        held = self._open.get(seq)
        if held is None:
            self._answered.add((seq, board))
            return
        held.waiting.discard(board)
        if not held.waiting:
            del self._open[seq]

    def for_board(self, node: str, now_ms: int) -> list[bytes]:
        """The raw entries of the commands ``node`` has not answered and that
        have not expired (at most :data:`MAX_PER_MESSAGE`, newest first)."""
        for seq in [s for s, o in self._open.items() if o.command.expires_ms <= now_ms]:
            del self._open[seq]
        found = [o for o in self._open.values() if node in o.waiting]
        found.sort(key=lambda o: -o.seq)
        return [o.raw for o in found[:MAX_PER_MESSAGE]]

    @property
    def pending(self) -> int:
        return len(self._open)


@dataclass
class CommandOutcome:
    """One command of this cloud and, per target board, its result (or None)."""

    command: Command
    seq: int
    ts: int
    results: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def as_json(self, now_ms: int) -> dict[str, Any]:
        c = self.command
        return {
            "id": c.id, "seq": self.seq, "expires_ms": c.expires_ms,
            "expired": c.expires_ms <= now_ms, "set": dict(c.set),
            "boards": dict(self.results),
        }  # fmt: skip


def _all(reader: LogStore, collections: tuple[str, ...]) -> Iterator[Entry]:
    after = 0
    while True:
        entries, after = reader.stored_since(collections, after)
        if not entries:
            return
        yield from entries


def command_outcomes(reader: LogStore, own: bytes) -> list[CommandOutcome]:
    """Every command of this cloud held in its log, oldest first, with each target's
    latest result (by the board's clock) from the ``_commands_result`` documents held."""
    prefix = f"{NodeId(own)}/"
    outcomes: dict[int, CommandOutcome] = {}
    for entry in _all(reader, (COMMANDS_COLLECTION,)):
        if entry.author != own:
            continue
        try:
            command = parse_command(entry)
        except ValueError:
            continue
        outcomes[entry.seq] = CommandOutcome(command, entry.seq, entry.ts,
                                             dict.fromkeys(command.to))  # fmt: skip
    for entry in _all(reader, (COMMAND_RESULTS_COLLECTION,)):
        doc = entry.doc_id or ""
        tail = doc[len(prefix) :]
        if not doc.startswith(prefix) or not tail.isdigit() or int(tail) not in outcomes:
            continue
        board = str(NodeId(entry.author))
        results = outcomes[int(tail)].results
        if board in results and isinstance(entry.body, dict):
            results[board] = dict(entry.body)
    return [outcomes[s] for s in sorted(outcomes)]
