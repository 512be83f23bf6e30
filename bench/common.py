"""Benchmark plumbing: results as ratios against limits measured in the same run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Result", "best_rate", "other_core_busy", "print_results", "save_results", "status_kib"]


@dataclass(frozen=True)
class Result:
    """One measurement. ``ratio = value / reference`` (both in ``unit``);
    ``target`` says which way is good, e.g. ``"≤ 1.5"`` or ``"≥ 0.7"``."""

    bench: str
    metric: str
    value: float
    unit: str
    reference_name: str
    reference: float
    target: str

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        op, bound = self.target.split()
        return self.ratio <= float(bound) if op == "≤" else self.ratio >= float(bound)


def best_rate(
    operation: Callable[[int], None], count: int, repeats: int = 3, *, cpu: bool = False
) -> float:
    """Operations per second: ``operation(count)`` timed, best of ``repeats``.

    ``cpu=True`` times the CPU the whole process used (all threads) instead of
    the wall clock: a cost that other tenants of a shared machine disturb less."""
    clock = time.process_time if cpu else time.perf_counter
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        operation(count)
        best = min(best, clock() - started)
    return count / best


@contextmanager
def other_core_busy() -> Iterator[None]:
    """A Python process spinning on the machine's last core while the block runs
    (the busy neighbour a board's other core often has: a sensor script, an
    update, another service)."""
    spin = "import os\nos.sched_setaffinity(0, {max(os.sched_getaffinity(0))})\nwhile True: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)  # pinned and spinning
        yield
    finally:
        busy.kill()
        busy.wait()


def print_results(results: list[Result]) -> None:
    print()
    print(f"{'benchmark':<22} {'metric':<38} {'value':>14} {'reference':>26} {'ratio':>7}  target")
    for r in results:
        verdict = {True: "met", False: "MISSED", None: ""}[r.met]
        print(
            f"{r.bench:<22} {r.metric:<38} {r.value:>10.4g} {r.unit:<3} "
            f"{r.reference_name:>17} {r.reference:>8.4g} {r.ratio:>7.3f}  {r.target} {verdict}"
        )


def save_results(results: list[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": [asdict(r) | {"ratio": r.ratio, "met": r.met} for r in results],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def status_kib(pid: int, field: str) -> int:
    """A process's ``VmRSS`` / ``VmHWM`` (``field``) in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")
