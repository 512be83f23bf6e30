"""Bundle benchmarks: export and import rates, plain and sealed, and bundle size.

Every rate is printed next to the raw Ed25519 verify rate measured in the
same run (the cost an import cannot avoid: every entry's signature):

* export entries/s (``lichen bundle export``'s path: SQLite rows streamed
  into a file, fsynced) — plain and sealed to a cloud;
* import entries/s into an empty log (both passes: every entry verified,
  then stored) — plain and sealed, with the entries checked in worker
  processes (the default for a bundle this size), and plain again with every
  entry checked in the importing process;
* bytes per reading in a sealed bundle, against the entries' own bytes per
  reading (what the framing and the encryption add).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

from agent.bundle.export import export_bundle
from agent.bundle.importer import import_into_store
from agent.bundle.seal import Opener
from agent.clock import HybridClock
from agent.identity import Identity
from agent.readings import encode_reading_batch
from agent.store.log_store import Draft, LogStore

from .common import Result, best_rate
from .log_bench import READINGS_PER_ENTRY, TEMPERATURE, _climate_readings

ROUNDS = 3


def _board_log(path: Path, identity: Identity, count: int) -> int:
    """A board's log of ``count`` reading batches; returns its entries' bytes."""
    rng = random.Random(11)
    clock = HybridClock()
    with LogStore(path) as store:
        for start in range(0, count, 500):
            drafts = [
                Draft(
                    "readings/climate",
                    encode_reading_batch(
                        _climate_readings(
                            1_795_000_000_000 + i * 1000, READINGS_PER_ENTRY, 100, rng
                        ),
                        TEMPERATURE,
                    ),
                )
                for i in range(start, min(count, start + 500))
            ]
            store.append(identity, clock, drafts)
        return store.totals()[1]


def bench_bundle(quick: bool) -> list[Result]:
    count = 3_000 if quick else 20_000
    key = SigningKey.generate()
    signed = key.sign(b"\x5a" * 220)  # about one entry's content
    verify_key = key.verify_key

    def verify(n: int) -> None:
        for _ in range(n):
            verify_key.verify(signed)

    board, cloud = Identity.generate(), Identity.generate()
    verify_rate = 0.0
    rates = {
        "export": 0.0,
        "export sealed": 0.0,
        "import": 0.0,
        "import sealed": 0.0,
        "import in one process": 0.0,
    }
    sealed_size = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        entry_bytes = _board_log(root / "board.db", board, count)
        for round_ in range(ROUNDS):
            verify_rate = max(verify_rate, best_rate(verify, count, repeats=1))
            for sealed in (False, True):
                name = " sealed" if sealed else ""
                bundle = root / f"{round_}{name.strip()}.lcb"
                with LogStore(root / "board.db") as store:
                    started = time.perf_counter()
                    export_bundle(store, board, bundle, seal_to=cloud.node_id if sealed else None)
                    elapsed = time.perf_counter() - started
                rates["export" + name] = max(rates["export" + name], count / elapsed)
                if sealed:
                    sealed_size = bundle.stat().st_size
                with LogStore(root / f"into{round_}{name.strip()}.db") as store:
                    started = time.perf_counter()
                    report = import_into_store(bundle, store, opener=Opener(cloud))
                    elapsed = time.perf_counter() - started
                    assert report.stored == count, report
                rates["import" + name] = max(rates["import" + name], count / elapsed)
            # the same import with every entry checked in this process (no workers)
            with LogStore(root / f"into{round_}one.db") as store:
                started = time.perf_counter()
                import_into_store(root / f"{round_}.lcb", store, opener=None, workers=0)
                elapsed = time.perf_counter() - started
            rates["import in one process"] = max(rates["import in one process"], count / elapsed)
    readings = count * READINGS_PER_ENTRY
    results = [
        Result("bundle", f"{what} entries/s", rate, "/s", "raw verify/s", verify_rate, target)
        for what, rate, target in (
            ("export", rates["export"], "≥ 1.0"),
            ("export sealed", rates["export sealed"], "≥ 1.0"),
            ("import", rates["import"], "≥ 0.5"),
            ("import sealed", rates["import sealed"], "≥ 0.5"),
            ("import in one process", rates["import in one process"], ""),
        )
    ]
    results.append(
        Result(
            "bundle",
            "sealed bundle bytes per reading",
            sealed_size / readings,
            "B",
            "entry B/reading",
            entry_bytes / readings,
            "≤ 1.05",
        )
    )
    return results
