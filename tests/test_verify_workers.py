"""Entries checked in worker processes (strict decoding and signatures on every
core): the check itself, when workers are started, and a bundle import through
them — the same entries stored, the same faults refused with the same reasons,
the earliest bad chunk named first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from agent.bundle import BundleError, BundleWriter
from agent.bundle.export import export_bundle
from agent.bundle.importer import import_into_store, verify_bundle
from agent.bundle.seal import Opener
from agent.entry import SIGNING_DOMAIN, Entry, decode_entry, sign_entry
from agent.identity import Identity
from agent.store import verify_workers
from agent.store.log_store import LogStore
from agent.store.verify_workers import MIN_ENTRIES, check_raws, workers_for

from .test_bundle import make_store, store_digest


def break_worker_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker pool fails at its first batch, as under a process limit."""
    from concurrent.futures.process import BrokenProcessPool

    class Refusing:
        def __init__(self, workers: int) -> None:
            pass

        def submit(self, *args: object) -> None:
            raise BrokenProcessPool("a child process terminated abruptly")

        def shutdown(self, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(verify_workers, "_executor", Refusing)


AUTHOR = Identity.generate()


def _chain(n: int, *, identity: Identity = AUTHOR, start_ts: int = 1 << 40) -> list[Entry]:
    out: list[Entry] = []
    prev = None
    for seq in range(1, n + 1):
        e = sign_entry(
            identity, seq=seq, prev=prev, ts=start_ts + seq, collection="notes", body={"n": seq}
        )
        out.append(e)
        prev = e.hash
    return out


def _forged(entry: Entry) -> Entry:
    """``entry`` with one signature bit flipped: it decodes, it does not verify."""
    raw = bytearray(entry.raw)
    raw[-1] ^= 1
    return decode_entry(bytes(raw))


def _non_canonical(entry: Entry, identity: Identity = AUTHOR) -> Entry:
    """``entry``'s content with its map keys in reverse order, signed by its
    author: the signature verifies, only strict decoding refuses it."""
    fields = cbor2.loads(entry.content)
    content = bytes([0xA0 + len(fields)]) + b"".join(
        cbor2.dumps(k) + cbor2.dumps(v) for k, v in sorted(fields.items(), reverse=True)
    )
    raw = cbor2.dumps([content, identity.sign(SIGNING_DOMAIN + content)])
    return decode_entry(raw, strict=False)


def test_the_check_passes_good_entries_and_names_the_first_bad_one() -> None:
    good = _chain(4)
    assert check_raws([e.raw for e in good]) is None
    forged = [good[0].raw, _forged(good[1]).raw, good[2].raw]
    assert check_raws(forged) == f"{good[1].where}: signature does not verify"
    problem = check_raws([good[0].raw, _non_canonical(good[1]).raw])
    assert problem is not None and "canonical" in problem
    assert check_raws([good[0].raw], max_size=10) == (
        f"entry is {len(good[0].raw)} bytes; the cap is 10"
    )


def test_workers_start_only_for_a_large_transfer_on_more_than_one_core(monkeypatch) -> None:
    monkeypatch.setattr(verify_workers, "cores", lambda: 2)
    assert workers_for(MIN_ENTRIES - 1) == 0
    assert workers_for(MIN_ENTRIES) == 2
    monkeypatch.setattr(verify_workers, "cores", lambda: 8)
    assert workers_for(10**6) == verify_workers.MAX_WORKERS
    monkeypatch.setattr(verify_workers, "cores", lambda: 1)
    assert workers_for(10**6) == 0


def _bundle(path: Path, entries: list[Entry], exporter: Identity = AUTHOR) -> Path:
    """A validly signed bundle of ``entries``, a few entries to a chunk."""
    writer = BundleWriter(exporter.node_id.key, created_ms=1, chunk_target=512)
    for e in entries:
        writer.add(e.author, e.seq, e.raw)
    writer.finish(exporter.sign)
    path.write_bytes(writer.data_to_send())
    return path


@pytest.mark.slow
def test_an_import_through_workers_stores_what_an_import_in_process_does(tmp_path) -> None:
    board = Identity.generate()
    source = make_store(tmp_path / "board.db", board, 600)
    sealed_to = Identity.generate()
    export_bundle(source, board, tmp_path / "b.lcb", seal_to=sealed_to.node_id, chunk_target=4096)
    digests = {}
    for workers in (0, 2):
        with LogStore(tmp_path / f"into{workers}.db") as store:
            report = import_into_store(
                tmp_path / "b.lcb", store, opener=Opener(sealed_to), workers=workers
            )
            assert (report.stored, report.refused) == (600, 0)
            digests[workers] = store_digest(store)
    assert digests[0] == digests[2]
    source.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "spoil, reason",
    [
        (_forged, r"signature does not verify"),
        (_non_canonical, r"canonical"),
    ],
    ids=["forged signature", "signed but not canonical"],
)
def test_a_bad_entry_is_refused_through_workers_with_the_in_process_reason(
    spoil, reason, tmp_path
) -> None:
    entries = _chain(60)
    entries[30] = spoil(entries[30])  # the next entry's prev no longer names it
    path = _bundle(tmp_path / "bad.lcb", entries)
    with LogStore(tmp_path / "into.db") as store:
        before = store_digest(store)
        in_process = _refusal(path, store, workers=0)
        assert store_digest(store) == before
        through_workers = _refusal(path, store, workers=2)
        assert store_digest(store) == before
    assert in_process.startswith("chunk ") and "a forged or corrupt entry" in in_process
    assert through_workers == in_process
    assert re.search(reason, through_workers)


def _refusal(path: Path, store: LogStore, *, workers: int) -> str:
    with pytest.raises(BundleError) as refused:
        import_into_store(path, store, opener=None, workers=workers)
    return str(refused.value)


@pytest.mark.slow
def test_the_earliest_bad_chunk_is_named_when_a_later_one_breaks_the_reader(tmp_path) -> None:
    """A forged signature early (only a worker sees it) and a broken chain in a
    later chunk (the reader meets it while the workers check): the forged entry,
    the earlier fault, is the one reported, as without workers."""
    entries = _chain(60)
    entries[-1] = _forged(entries[-1])  # the last of its feed: its chain still holds
    later = Identity.generate()
    while later.node_id.key < AUTHOR.node_id.key:  # its feed comes after AUTHOR's
        later = Identity.generate()
    one, two = _chain(2, identity=later), _chain(2, identity=later, start_ts=1 << 43)
    bad_chain = [one[0], two[1]]  # seq 2 of another history: the reader refuses it
    path = _bundle(tmp_path / "two.lcb", entries + bad_chain)
    with pytest.raises(BundleError) as first:
        verify_bundle(path, opener=None, workers=2)
    forged = re.match(r"chunk (\d+): a forged or corrupt entry: .*signature", str(first.value))
    assert forged is not None, first.value
    with pytest.raises(BundleError) as alone:  # the chain break, alone, is met later
        verify_bundle(path, opener=None, workers=0)
    assert str(alone.value) == str(first.value)
    entries[-1] = _chain(60)[-1]
    with pytest.raises(BundleError, match=r"chunk (\d+): .*does not chain") as chain:
        verify_bundle(_bundle(tmp_path / "chain.lcb", entries + bad_chain), opener=None, workers=2)
    assert int(str(chain.value).split()[1].rstrip(":")) > int(forged.group(1))


def test_workers_that_cannot_start_leave_the_check_to_this_process(monkeypatch, tmp_path) -> None:
    """A process limit or an unguarded main script breaks the pool: the bundle
    is then checked in-process, and a forged entry is still refused."""
    break_worker_pool(monkeypatch)
    good = _chain(30)
    _header, manifest, _digests = verify_bundle(
        _bundle(tmp_path / "good.lcb", good), opener=None, workers=2
    )
    assert manifest.entries == 30
    bad = [*good[:-1], _non_canonical(good[-1])]
    with pytest.raises(BundleError, match=r"a forged or corrupt entry: .*canonical"):
        verify_bundle(_bundle(tmp_path / "bad.lcb", bad), opener=None, workers=2)


@pytest.mark.slow
def test_a_worker_process_loads_the_entry_checks_not_the_store() -> None:
    """A worker imports what the check needs (agent.entry): not SQLite, the
    log store, its writer or asyncio, which the agent.store package would
    load if its names were imported eagerly (about 0.1 s of CPU per process)."""
    good = _chain(3)
    with verify_workers.VerifyWorkers(1) as pool:
        assert pool.check([e.raw for e in good]).result() is None
        modules: list[str] = pool._pool.submit(eval, "sorted(__import__('sys').modules)").result()
    assert "agent.entry" in modules and "agent.store.verify_workers" in modules
    loaded = {"sqlite3", "asyncio", "agent.store.log_store", "agent.store.writer"} & set(modules)
    assert not loaded


@pytest.mark.slow
def test_a_worker_runs_the_lichen_script_again_without_loading_the_cli() -> None:
    """A worker spawned under the ``lichen`` console script runs that script
    again as ``__mp_main__`` (as multiprocessing's spawn does): that must not
    import the command line (click, the configuration, the log store)."""
    script = Path(sys.executable).with_name("lichen")
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__'); "
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(script)], capture_output=True, text=True, check=True
    )
    modules = set(done.stdout.split())
    assert "agent.__main__" in modules
    assert not {"click", "agent.cli", "agent.config", "sqlite3"} & modules
