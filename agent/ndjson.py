"""Bulk writes from newline-delimited JSON (``lichen log append --ndjson``).

One JSON object per line::

    {"collection": "notes", "body": {"text": "pump replaced"}}
    {"collection": "config", "id": "site", "body": {"interval": 5}}

or, with a fixed collection (``--collection notes``), each line is the body
itself. Blank lines are skipped (and counted).

Lines are read a batch at a time (at most :data:`BATCH_LINES` lines or
:data:`BATCH_BYTES` bytes), checked, and appended through the node's one
:class:`~agent.store.writer.LogWriter` as one all-or-nothing group per batch;
the next batch is read while the previous one commits. Memory stays bounded
by two batches, whatever the input's size; a line longer than the entry size
allows is refused without being read whole.

**A bad line stops the run.** Every line before it is stored, and nothing from
it on is: the batch that holds it is written line by line up to it, so no
entry after it exists, even for a moment. The error names the line number and
what is wrong; going on from there is ``tail -n +N FILE | lichen log append
--ndjson -`` once the line is fixed. Earlier lines stay because a bulk load
may be larger than any transaction should be, and because an append-only log
cannot take entries back anyway (a signed entry may already have been synced).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .entry import check_collection, check_doc_id
from .errors import EncodingError, LichenError
from .store.log_store import Draft
from .store.writer import LogWriter

__all__ = ["BATCH_BYTES", "BATCH_LINES", "AppendReport", "BadLine", "append_ndjson", "parse_line"]

BATCH_LINES = 500
BATCH_BYTES = 1 << 20
_KEYS = ("collection", "body", "id")


class BadLine(LichenError):
    """Line ``line`` of the input cannot be appended (``problem`` says why)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass
class AppendReport:
    """What a run stored: ``lines`` read (blank ones too), ``appended`` entries,
    the seqs of the first and last, and the bad line that stopped it."""

    lines: int = 0
    appended: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    error: BadLine | None = None
    #: the store failed (a full disk): what it said; nothing after ``stored_lines`` was written
    failure: str | None = None
    #: the line numbers of the entries appended, first and last (for messages)
    stored_lines: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        error = (
            None if self.error is None else {"line": self.error.line, "problem": self.error.problem}
        )
        return {
            "lines": self.lines,
            "appended": self.appended,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "error": error,
            "store_error": self.failure,
        }


def parse_line(text: str, number: int, collection: str | None = None) -> Draft:
    """The draft line ``number`` asks for; :class:`BadLine` naming what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(number, f"not JSON: {exc}") from None
    doc_id: Any = None
    if collection is None:
        if not isinstance(value, dict):
            raise BadLine(
                number,
                'must be an object {"collection": …, "body": …, "id": …} '
                "(or give --collection, and each line is a body)",
            )
        unknown = sorted(set(value) - set(_KEYS))
        if unknown:
            raise BadLine(number, f"unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
        if "collection" not in value or "body" not in value:
            missing = "collection" if "collection" not in value else "body"
            raise BadLine(number, f"has no {missing!r}")
        collection, body, doc_id = value["collection"], value["body"], value.get("id")
    else:
        body = value
    try:
        check_collection(collection)
        if doc_id is not None:
            check_doc_id(doc_id)
    except ValueError as exc:
        raise BadLine(number, str(exc)) from None
    assert isinstance(collection, str)
    if collection.startswith("_"):
        raise BadLine(
            number,
            f"collection {collection!r}: names starting with '_' are "
            "Lichen's own (membership, acknowledgements); choose another name",
        )
    try:
        return Draft(collection, body, doc_id).encoded_copy()
    except (EncodingError, ValueError, TypeError, OverflowError) as exc:
        raise BadLine(number, f"body: {exc}") from None


@dataclass
class _Batch:
    drafts: list[Draft] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    lines: int = 0
    error: BadLine | None = None
    ended: bool = False


class _Reader:
    """Reads a batch of lines (in a worker thread, while the last one commits)."""

    def __init__(self, stream: BinaryIO, collection: str | None, max_line: int) -> None:
        self.stream, self.collection, self.max_line = stream, collection, max_line
        self.number = 0

    def batch(self) -> _Batch:
        out = _Batch()
        size = 0
        while len(out.drafts) < BATCH_LINES and size < BATCH_BYTES:
            raw = self.stream.readline(self.max_line + 1)
            if not raw:
                out.ended = True
                break
            self.number += 1
            out.lines += 1
            if len(raw) > self.max_line and not raw.endswith(b"\n"):
                out.error = BadLine(self.number, f"longer than {self.max_line} bytes")
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                out.error = BadLine(self.number, f"not UTF-8: {exc}")
                break
            if not text.strip():
                continue
            try:
                out.drafts.append(parse_line(text, self.number, self.collection))
            except BadLine as exc:
                out.error = exc
                break
            out.numbers.append(self.number)
            size += len(raw)
        return out


async def append_ndjson(
    stream: BinaryIO,
    writer: LogWriter,
    *,
    collection: str | None = None,
    max_entry_size: int = 16384,
    progress: Callable[[AppendReport], None] | None = None,
) -> AppendReport:
    """Append every line of ``stream`` through ``writer`` (started). Stops at the
    first bad line (``report.error``) or when the store fails (``report.failure``:
    a full disk), with what was stored before counted."""
    reader = _Reader(stream, collection, max_line=4 * max_entry_size + 1024)
    report = AppendReport()
    pending = asyncio.create_task(asyncio.to_thread(reader.batch))
    while True:
        batch = await pending
        report.lines += batch.lines
        more = not batch.ended and batch.error is None
        if more:  # read the next batch while this one commits
            pending = asyncio.create_task(asyncio.to_thread(reader.batch))
        try:
            error = await _store(writer, batch, report)
        except Exception as exc:  # the store failed (a full disk): stop, say how far it got
            report.failure = f"{type(exc).__name__}: {exc}"
            if more:
                await pending
            break
        if error is not None or batch.error is not None:
            report.error = error or batch.error
            assert report.error is not None
            report.lines = report.error.line
            if more:  # the batch read ahead is dropped: nothing after the bad line
                await pending
            break
        if progress is not None:
            progress(report)
        if not more:
            break
    return report


async def _store(writer: LogWriter, batch: _Batch, report: AppendReport) -> BadLine | None:
    """Append ``batch`` as one group; if it is refused, line by line up to the
    refused one (returned). A store-level failure raises."""
    if not batch.drafts:
        return None
    try:
        entries = await writer.append_many(batch.drafts)
    except ValueError:  # one line the checks above let through: find it
        for draft, number in zip(batch.drafts, batch.numbers, strict=True):
            try:
                (entry,) = await writer.append_many([draft])
            except ValueError as exc:
                return BadLine(number, str(exc))
            _count(report, [entry.seq], number)
        return None
    _count(report, [e.seq for e in entries], batch.numbers[-1], batch.numbers[0])
    return None


def _count(report: AppendReport, seqs: list[int], last_line: int, first_line: int = 0) -> None:
    report.appended += len(seqs)
    if report.first_seq is None:
        report.first_seq = seqs[0]
        report.stored_lines = [first_line or last_line, last_line]
    report.last_seq = seqs[-1]
    report.stored_lines = [report.stored_lines[0], last_line]
