"""Export: a store's entries into a bundle file, streamed.

Entries are read feed by feed in bounded queries (128 rows) through the
``(feed, seq)`` index and written as they come; each feed's range is fixed
at its head when the export starts, so entries appended meanwhile wait for
the next bundle. The bundle is written to ``FILE.part``, fsynced, then
renamed: a ``FILE`` is always whole. ``max_size`` stops before the bundle
would pass it; the manifest's ranges then say where the next export
(``since`` that bundle) goes on. ``readable`` leaves out the collections a
bundle's recipient may not read (``lichen bundle export --for``: the
fleet's read rules, as a sync session applies them).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypedDict, Unpack

from ..fsutil import fsync_dir
from ..identity import Identity, NodeId
from ..store.log_store import LogStore
from .format import CHUNK_TARGET, BundleError, Manifest
from .writer import BundleWriter

__all__ = [
    "BundleStream",
    "ExportReport",
    "Selection",
    "StreamOptions",
    "collection_filter",
    "export_bundle",
    "feed_rows",
]

_ROWS = 128  # rows per query: at most 2 MiB of 16 KiB entries in memory


@dataclass(frozen=True, slots=True)
class Selection:
    """Which entries go into a bundle. ``collections``: shell-style patterns
    (``readings/*``; empty: every collection); ``since_ts``: entries with a
    timestamp at or after this hybrid-clock value; ``after``: per feed, only
    seqs above this one (a previous bundle's :meth:`Manifest.since`)."""

    collections: tuple[str, ...] = ()
    since_ts: int | None = None
    after: dict[bytes, int] = field(default_factory=dict)

    def for_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.collections:
            out["collections"] = list(self.collections)
        if self.since_ts is not None:
            out["since_ts"] = self.since_ts
        return out

    @classmethod
    def continuing(cls, previous: Manifest) -> Selection:
        """What comes after ``previous``, with its collections and time bound."""
        chosen = previous.selection
        patterns = chosen.get("collections", [])
        since = chosen.get("since_ts")
        return cls(
            tuple(p for p in patterns if isinstance(p, str)),
            since if type(since) is int else None,
            previous.since(),
        )


@dataclass(slots=True)
class ExportReport:
    path: Path
    manifest: Manifest
    file_bytes: int
    seconds: float
    sealed_to: NodeId | None
    complete: bool  # False: max_size stopped it; export again `since` this bundle

    def as_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "file": str(self.path),
            "bundle_id": m.bundle_id.hex(),
            "exporter": str(NodeId(m.exporter)),
            "sealed_to": None if self.sealed_to is None else str(self.sealed_to),
            "entries": m.entries,
            "entry_bytes": m.entry_bytes,
            "file_bytes": self.file_bytes,
            "chunks": m.chunks,
            "feeds": [
                {"node_id": str(s.node_id), "first": s.first, "last": s.last, "entries": s.count}
                for s in m.feeds
            ],
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
        }


class BundleStream:
    """The bytes of a bundle of ``store``'s selected entries, made as they are
    iterated (a file, or an HTTP response): bounded memory whatever the size.
    After the iteration :attr:`manifest` is the signed manifest and
    :attr:`complete` False if ``max_size`` stopped it."""

    def __init__(
        self,
        store: LogStore,
        identity: Identity,
        selection: Selection | None = None,
        *,
        seal_to: NodeId | None = None,
        max_size: int | None = None,
        chunk_target: int = CHUNK_TARGET,
        progress: Callable[[int], None] | None = None,
        readable: Callable[[str], bool] | None = None,
    ) -> None:
        self.store, self.identity = store, identity
        self.readable = readable
        self.selection = selection or Selection()
        self.max_size, self.progress = max_size, progress
        self.writer = BundleWriter(
            identity.node_id.key,
            created_ms=time.time_ns() // 1_000_000,
            seal_to=None if seal_to is None else seal_to.key,
            selection=self.selection.for_manifest(),
            chunk_target=chunk_target,
        )
        self.manifest: Manifest | None = None
        self.complete = True

    def __iter__(self) -> Iterator[bytes]:
        writer, max_size = self.writer, self.max_size
        yield writer.data_to_send()
        for author, seq, raw in _rows(self.store, self.selection, self.readable):
            if max_size is not None and _would_pass(writer, len(raw), max_size):
                if not writer.entries:  # the next export would stop at the same place
                    raise BundleError(
                        f"--max-size {max_size} bytes leaves no room for the first entry "
                        f"({len(raw)} bytes) and the bundle's frames. Fix: a larger size"
                    )
                self.complete = False
                break
            writer.add(author, seq, raw)
            if data := writer.data_to_send():
                yield data
                if self.progress is not None:
                    self.progress(writer.entries)
        self.manifest = writer.finish(self.identity.sign)
        yield writer.data_to_send()


class StreamOptions(TypedDict, total=False):
    """The keyword options of :class:`BundleStream`, which :func:`export_bundle` passes on."""

    seal_to: NodeId | None
    max_size: int | None
    chunk_target: int
    progress: Callable[[int], None] | None
    readable: Callable[[str], bool] | None


def export_bundle(
    store: LogStore,
    identity: Identity,
    path: Path,
    selection: Selection | None = None,
    **options: Unpack[StreamOptions],
) -> ExportReport:
    """Write the selected entries of ``store`` to a new bundle at ``path`` (of the
    collections ``readable`` says yes to, if given; ``options``: those of
    :class:`BundleStream`)."""
    if path.exists():
        raise BundleError(f"{path} exists. Fix: choose another file name, or remove it first")
    started = time.perf_counter()
    stream = BundleStream(store, identity, selection, **options)
    part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as out:
            for data in stream:
                out.write(data)
            _sync(out)
        os.replace(part, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        if exc.errno == errno.ENOSPC:
            raise BundleError(
                f"no space left writing {path} (after {stream.writer.bytes_written} bytes). Fix: "
                "free space, or split the export with --max-size and continue with --since"
            ) from None
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    assert stream.manifest is not None
    return ExportReport(
        path, stream.manifest, stream.writer.bytes_written, time.perf_counter() - started,
        options.get("seal_to"), stream.complete,
    )  # fmt: skip


def _sync(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _would_pass(writer: BundleWriter, size: int, max_size: int) -> bool:
    """Whether one more entry of ``size`` bytes could take the finished bundle past
    ``max_size``: what is written and held, the entry, and room for the frames
    still to come and the manifest."""
    chunks = (writer.pending_bytes() + size) // writer.chunk_target + 3
    reserve = 512 + 80 * (writer.feed_count + 1) + chunks * (5 + 5 + 16 + 9)
    return writer.bytes_written + writer.pending_bytes() + size + 10 + reserve > max_size


def _rows(
    store: LogStore, selection: Selection, readable: Callable[[str], bool] | None = None
) -> Iterator[tuple[bytes, int, bytes]]:
    """``(author, seq, raw)`` of the selected entries, by author then seq."""
    where, params = collection_filter(store, selection.collections)
    if readable is not None:  # the collections known now: one that appears meanwhile stays out
        read = [cid for cid, name in store.connection.execute("SELECT id, name FROM collections")
                if readable(name)]  # fmt: skip
        where += f" AND collection IN ({','.join('?' * len(read)) or 'NULL'})"
        params += read
    if selection.since_ts is not None:
        where += " AND ts >= ?"
        params.append(selection.since_ts)
    feeds = store.connection.execute(
        "SELECT id, author, head_seq FROM feeds ORDER BY author"
    ).fetchall()
    for feed_id, key, head_seq in feeds:
        author = bytes(key)
        after = selection.after.get(author, 0)
        for seq, raw in feed_rows(store, feed_id, after, head_seq, where=where, params=params):
            yield author, seq, raw


def feed_rows(
    store: LogStore,
    feed_id: int,
    after: int,
    upto: int,
    *,
    where: str = "",
    params: Sequence[Any] = (),
) -> Iterator[tuple[int, bytes]]:
    """``(seq, raw)`` of one feed's entries with ``after < seq <= upto`` (and the
    SQL condition ``where`` on ``params``, as :func:`collection_filter` makes),
    by seq, in bounded queries."""
    while after < upto:
        rows = store.connection.execute(
            f"SELECT seq, raw FROM entries WHERE feed = ? AND seq > ? AND seq <= ?{where} "
            "ORDER BY seq LIMIT ?",
            (feed_id, after, upto, *params, _ROWS),
        ).fetchall()
        for seq, raw in rows:
            yield int(seq), bytes(raw)
        if len(rows) < _ROWS:
            return
        after = int(rows[-1][0])


def collection_filter(store: LogStore, patterns: Sequence[str]) -> tuple[str, list[Any]]:
    """The SQL condition ``" AND collection IN (…)"`` and its parameters for the
    collections matching any of the shell-style ``patterns`` (none given: no condition)."""
    if not patterns:
        return "", []
    ids = [
        int(cid)
        for cid, name in store.connection.execute("SELECT id, name FROM collections")
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    ]
    return f" AND collection IN ({','.join('?' * len(ids)) or 'NULL'})", ids
