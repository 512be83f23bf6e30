"""Commands from the cloud: signed, expiring setting changes for boards.

A **command** is an entry of a cloud's own feed in collection ``_commands``,
document id = the command id, body::

    {"id": "c-…", "to": ["lc1…", …], "expires_ms": T, "set": {"sensors.climate.interval": 2.0}}

It travels like any entry (the MQTT ack topic, gossip, bundles, mules). A
board acts on each ``_commands`` entry once and records what it did as a
version of the document ``CLOUD/SEQ`` (the command entry's author and seq) in
collection ``_commands_result`` of its own feed, which reaches the cloud like
any entry::

    {"id": "c-…", "cloud": "lc1…", "seq": 7, "outcome": "executed" | "refused",
     "reason": null | "untrusted" | …, "detail": "…", "at_ms": board clock}

:class:`CommandJudge` decides, with no I/O; the order of its checks is the
order of :data:`REFUSALS`:

``untrusted``    not signed by a cloud this board accepts (``[retention] ack_from``);
``malformed``    not a command body;
``not_for_me``   this board is not in ``to``;
``replayed``     a command with this id was acted on already (another entry);
``expired``      ``expires_ms`` is past by this board's clock;
``not_allowed``  a key outside :data:`ALLOWED_KEYS`;
``invalid``      an allowed key with a value the board refuses (an unknown sensor,
                 a value out of range: checked when it is applied).

Only the keys the board can change while running, and that a cloud may
reasonably change, are allowed: a sensor's sampling ``interval`` and the log's
``flush_interval``. What was set is kept in ``HOME/overrides.toml`` (see
:mod:`agent.runtime.overrides`), never in ``lichen.toml``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .cloud_feed import COMMANDS_COLLECTION
from .entry import Entry
from .identity import NodeId

__all__ = [
    "ALLOWED_KEYS",
    "MAX_TTL_MS",
    "REFUSALS",
    "Command",
    "CommandJudge",
    "CommandVerdict",
    "check_key",
    "command_body",
    "parse_assignment",
    "parse_command",
    "result_body",
    "result_doc_id",
]

#: why a command was refused, in the order they are checked (status keys)
REFUSALS = (
    "untrusted", "malformed", "not_for_me", "replayed", "expired", "not_allowed", "invalid"
)  # fmt: skip
#: the longest a command may stay valid (a board keeps its results longer)
MAX_TTL_MS = 30 * 86_400_000
#: the settings a command may change (``NAME`` is a sensor instance's name)
ALLOWED_KEYS = ("sensors.NAME.interval", "log.flush_interval")
MAX_TARGETS = 1000
MAX_SETTINGS = 16
_SENSOR_KEY = re.compile(r"sensors\.([A-Za-z0-9_\-]{1,64})\.interval")
_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True, slots=True)
class Command:
    """What a cloud asks boards to do."""

    id: str
    to: tuple[str, ...]
    expires_ms: int
    set: Mapping[str, Any]


def check_key(key: str) -> None:
    """ValueError unless ``key`` is one a command may set."""
    if key != "log.flush_interval" and not _SENSOR_KEY.fullmatch(key):
        raise ValueError(
            f"{key!r} is not a setting a command may change ({', '.join(ALLOWED_KEYS)})"
        )


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"sensors.climate.interval=2.5"`` → ``("sensors.climate.interval", 2.5)``: the
    value is read as a TOML value (a number, ``true``, ``"text"``)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise ValueError(f"{text!r} is not KEY=VALUE, e.g. sensors.climate.interval=2.5")
    check_key(key)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        raise ValueError(f'{key}: {raw!r} is not a value (a number, true/false, "text")') from None
    return key, value


def command_body(command: Command) -> dict[str, Any]:
    """The body of a ``_commands`` entry (checked as a board will check it)."""
    body = {"id": command.id, "to": list(command.to), "expires_ms": command.expires_ms,
            "set": dict(command.set)}  # fmt: skip
    _parse_body(body)
    return body


def _parse_body(body: object) -> Command:
    if not isinstance(body, Mapping) or set(body) != {"id", "to", "expires_ms", "set"}:
        raise ValueError('a command body is {"id", "to", "expires_ms", "set"}')
    ident, to, expires, changes = body["id"], body["to"], body["expires_ms"], body["set"]
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise ValueError(f"command id {ident!r} is not 1–64 letters, digits, - or _")
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_TARGETS:
        raise ValueError(f"to must list 1 to {MAX_TARGETS} node ids")
    for node in to:
        if not isinstance(node, str):
            raise ValueError(f"to: {node!r} is not a node id")
        NodeId.parse(node)
    if type(expires) is not int or expires <= 0:
        raise ValueError(f"expires_ms {expires!r} is not a time in milliseconds")
    if not isinstance(changes, Mapping) or not 1 <= len(changes) <= MAX_SETTINGS:
        raise ValueError(f"set must hold 1 to {MAX_SETTINGS} settings")
    if not all(isinstance(k, str) for k in changes):
        raise ValueError("set: keys are setting names")
    return Command(ident, tuple(to), expires, dict(changes))


def parse_command(entry: Entry) -> Command:
    """The command an entry carries, or ValueError naming what is wrong."""
    if entry.collection != COMMANDS_COLLECTION:
        raise ValueError(f"{entry.collection!r} is not {COMMANDS_COLLECTION!r}")
    command = _parse_body(entry.body)
    if entry.doc_id != command.id:
        raise ValueError(f"document id {entry.doc_id!r} is not the command id {command.id!r}")
    return command


def result_doc_id(entry: Entry) -> str:
    """The document of a board's result for command entry ``entry``: ``CLOUD/SEQ``."""
    return f"{NodeId(entry.author)}/{entry.seq}"


@dataclass(frozen=True, slots=True)
class CommandVerdict:
    """What to do with one command entry: ``execute`` it (then record
    ``executed``, or ``invalid`` if applying it failed), or record a refusal."""

    execute: bool
    reason: str | None = None
    detail: str = ""
    command: Command | None = None


def result_body(
    entry: Entry, verdict: CommandVerdict, at_ms: int, *, failed: str | None = None
) -> dict[str, Any]:
    """The body of a ``_commands_result`` version. ``failed``: why applying an
    executable command failed (then the outcome is ``refused``, reason ``invalid``)."""
    command = verdict.command
    ident = command.id if command is not None else _loose_id(entry)
    if verdict.execute and failed is None:
        outcome, reason, detail = "executed", None, "applied"
    elif verdict.execute:
        outcome, reason, detail = "refused", "invalid", failed or ""
    else:
        outcome, reason, detail = "refused", verdict.reason, verdict.detail
    return {"id": ident, "cloud": str(NodeId(entry.author)), "seq": entry.seq,
            "outcome": outcome, "reason": reason, "detail": detail,
            "at_ms": at_ms}  # fmt: skip


def _loose_id(entry: Entry) -> str | None:
    body = entry.body
    ident = body.get("id") if isinstance(body, Mapping) else None
    return ident if isinstance(ident, str) and _ID.fullmatch(ident) else None


class CommandJudge:
    """Decides on command entries for node ``me``; remembers the command ids acted
    on (``acted``: from the results this node recorded before)."""

    def __init__(self, me: str, acted: Collection[str] = ()) -> None:
        self.me = me
        self.acted: set[str] = set(acted)

    def judge(self, entry: Entry, clouds: Collection[bytes], now_ms: int) -> CommandVerdict:
        """The verdict on ``entry`` at board time ``now_ms``; an executable or a
        refused command of an accepted cloud counts as acted on from now."""
        if entry.author not in clouds:
            return CommandVerdict(False, "untrusted", "not signed by a cloud this board "
                                  "accepts ([retention] ack_from)")  # fmt: skip
        try:
            command = parse_command(entry)
        except ValueError as exc:
            return CommandVerdict(False, "malformed", str(exc))
        if self.me not in command.to:
            return CommandVerdict(False, "not_for_me", "this board is not in to", command)
        if command.id in self.acted:
            return CommandVerdict(False, "replayed", f"command {command.id} was acted on "
                                  "already", command)  # fmt: skip
        self.acted.add(command.id)
        if command.expires_ms <= now_ms:
            return CommandVerdict(False, "expired", f"expired {now_ms - command.expires_ms} ms "
                                  "ago by this board's clock", command)  # fmt: skip
        for key in command.set:
            try:
                check_key(key)
            except ValueError as exc:
                return CommandVerdict(False, "not_allowed", str(exc), command)
        return CommandVerdict(True, command=command)
