"""A large initial sync checks received entries in worker processes: the same
entries stored, a forged or non-canonical entry refused with the same error as
a session without workers, nothing before it lost, no process left behind; a
small sync starts none."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import cbor2
import pytest

from agent.entry import SIGNING_DOMAIN
from agent.identity import Identity
from agent.mesh.session import SessionReport
from agent.store import verify_workers

from .helpers.nodes import Node, open_node, run_sessions
from .test_verify_workers import _forged, _non_canonical, break_worker_pool

LARGE = 2400  # with the threshold lowered to 1000 below: a "large" transfer
BAD_SEQ = 1700


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A two-core node whose threshold for workers is 1 000 entries."""
    monkeypatch.setattr(verify_workers, "cores", lambda: 2)
    monkeypatch.setattr(verify_workers, "MIN_ENTRIES", 1000)


async def _pull(source: Node, path: Path) -> tuple[SessionReport, set[tuple[bytes, int]]]:
    """A fresh node at ``path`` syncs once from ``source``: its report and what it holds."""
    receiver = await open_node(path)
    try:
        _, report = await run_sessions(source, receiver)
        return report, receiver.keys()
    finally:
        await receiver.close()


def _replace(node: Node, seq: int, raw: bytes) -> None:
    """Put ``raw`` in ``node``'s own feed at ``seq``, as a broken or hostile sender would."""
    with sqlite3.connect(node.path) as db:
        db.execute("UPDATE entries SET raw = ? WHERE seq = ?", (raw, seq))


@pytest.mark.slow
async def test_a_large_sync_is_checked_in_workers_and_stores_everything(
    tmp_path: Path, two_cores: None
) -> None:
    source = await open_node(tmp_path / "a.db")
    try:
        await source.append(LARGE)
        report, held = await _pull(source, tmp_path / "b.db")
        assert report.ok and report.clean, report
        assert report.entries_checked_apart == LARGE
        assert held == source.keys() and len(held) == LARGE
    finally:
        await source.close()
    assert multiprocessing.active_children() == []  # the workers are gone


@pytest.mark.slow
@pytest.mark.parametrize("spoil", ["forged", "non-canonical", "body not CBOR"])
async def test_a_bad_entry_in_a_large_sync_is_refused_as_without_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_cores: None, spoil: str
) -> None:
    identity = Identity.generate()
    source = await open_node(tmp_path / "a.db", identity)
    try:
        await source.append(LARGE)
        good = source.reader.get(identity.node_id.key, BAD_SEQ)
        assert good is not None
        if spoil == "body not CBOR":  # the receiver reads no body: only the workers see it
            content = good.content[:-1] + b"\xff"  # a stray "break"
            bad_raw = cbor2.dumps([content, identity.sign(SIGNING_DOMAIN + content)])
        else:
            bad = _forged(good) if spoil == "forged" else _non_canonical(good, identity)
            bad_raw = bad.raw
        _replace(source, BAD_SEQ, bad_raw)
        with_workers, held = await _pull(source, tmp_path / "b.db")
        monkeypatch.setattr(verify_workers, "cores", lambda: 1)  # no workers
        alone, held_alone = await _pull(source, tmp_path / "c.db")
    finally:
        await source.close()
    assert with_workers.entries_checked_apart > 0
    assert alone.entries_checked_apart == 0
    assert with_workers.error == alone.error and with_workers.error is not None
    expected = {
        "forged": "signature does not verify",
        "non-canonical": "canonical CBOR form",
        "body not CBOR": "not valid CBOR",
    }[spoil]
    assert expected in with_workers.error
    assert with_workers.protocol_error and alone.protocol_error
    author = identity.node_id.key
    before = {(author, seq) for seq in range(1, BAD_SEQ)}
    assert before <= held and before <= held_alone  # nothing before the fault is lost
    assert (author, BAD_SEQ) not in held and (author, BAD_SEQ) not in held_alone
    assert multiprocessing.active_children() == []


async def test_a_small_sync_starts_no_worker_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_workers, "cores", lambda: 2)
    started: list[int] = []

    def no_workers(*args: object, **kwargs: object) -> None:
        started.append(1)
        raise AssertionError("a small sync started worker processes")

    monkeypatch.setattr(verify_workers.VerifyWorkers, "__init__", no_workers)
    source = await open_node(tmp_path / "a.db")
    try:
        await source.append(600)
        report, held = await _pull(source, tmp_path / "b.db")
        assert report.ok and len(held) == 600
        assert report.entries_checked_apart == 0 and not started
    finally:
        await source.close()
    assert multiprocessing.active_children() == []


async def test_workers_that_cannot_start_leave_the_sync_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_cores: None
) -> None:
    """A process limit breaks the pool: the rest is checked in-process, all stored,
    and a non-canonical entry is still refused."""
    break_worker_pool(monkeypatch)
    identity = Identity.generate()
    source = await open_node(tmp_path / "a.db", identity)
    try:
        await source.append(LARGE)
        report, held = await _pull(source, tmp_path / "b.db")
        assert report.ok and held == source.keys()
        assert report.entries_checked_apart == 0
        good = source.reader.get(identity.node_id.key, BAD_SEQ)
        assert good is not None
        _replace(source, BAD_SEQ, _non_canonical(good, identity).raw)
        spoiled, _ = await _pull(source, tmp_path / "c.db")
    finally:
        await source.close()
    assert spoiled.protocol_error and "canonical CBOR form" in (spoiled.error or "")
