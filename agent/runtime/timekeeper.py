"""The board's clock, corrected by its clouds' time beacons (``docs/time.md``).

:class:`Timekeeper` is the asyncio-free shell around the sans-IO
:class:`~agent.beacon.ClockCorrector`:

* it is the agent's wall clock (:meth:`Timekeeper.wall`, given to the node's
  :class:`~agent.clock.HybridClock`): the system clock, or the time the latest
  beacon established advanced by monotonic time, whichever is later;
* :meth:`Timekeeper.consider` takes the ``_time`` entries newly stored in the
  log (by any path), keeps those of accepted clouds, decides on the newest and
  returns the ``_clock`` record of a correction, which the caller appends to the
  node's own feed;
* the anchor is kept in ``HOME/state/clock.json`` with the kernel's boot id, so
  an agent restarted within the same boot keeps its corrected clock (monotonic
  time goes on across processes, not across boots).

``LICHEN_TEST_WALL_OFFSET_MS`` (for tests only) adds that many milliseconds to
the system clock this agent reads, so a test can run a board "in the past"
without touching the machine's clock.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..beacon import OUTCOMES, Anchor, ClockBounds, ClockCorrector, Verdict, parse_beacon_body
from ..board import load_board
from ..clock import wall_ms
from ..cloud_feed import CLOCK_COLLECTION, TIME_COLLECTION
from ..config import Config
from ..entry import Entry
from ..errors import ConfigError
from ..fsutil import atomic_write
from ..identity import NodeId
from ..logs import event
from ..store.log_store import Draft

if TYPE_CHECKING:
    from ..hardware import Hardware
    from ..home import Home

__all__ = ["TEST_OFFSET_ENV", "Timekeeper", "boot_id", "mono_ms", "timekeeper_for"]

log = logging.getLogger("lichen.clock")

#: test only: milliseconds added to the system clock the agent reads
TEST_OFFSET_ENV = "LICHEN_TEST_WALL_OFFSET_MS"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def mono_ms() -> int:
    """The monotonic clock in milliseconds (one per boot, shared by processes)."""
    return time.monotonic_ns() // 1_000_000


def boot_id() -> str | None:
    """This boot's id (Linux), or None where there is none."""
    try:
        return _BOOT_ID.read_text("ascii").strip() or None
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Considered:
    """What became of one ``_time`` entry."""

    entry: Entry
    verdict: Verdict


class Timekeeper:
    """The agent's corrected wall clock, and the decisions on beacons."""

    def __init__(
        self,
        bounds: ClockBounds,
        *,
        rtc: bool,
        state_file: Path,
        system_ms: Any = None,
        monotonic_ms: Any = None,
    ) -> None:
        offset = int(os.environ.get(TEST_OFFSET_ENV, "0") or 0)
        self._system = system_ms or (lambda: wall_ms() + offset)
        self._mono = monotonic_ms or mono_ms
        self.test_offset_ms = offset
        self.state_file = state_file
        self.corrector = ClockCorrector(bounds, rtc=rtc)
        self.outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.invalid = 0
        self.last: dict[str, Any] | None = None
        self._restore()

    # ------------------------------------------------------------- the clock

    def wall(self) -> int:
        """The board's wall clock in milliseconds (for the node's hybrid clock)."""
        return self.corrector.wall(self._system(), self._mono())

    def _restore(self) -> None:
        """The anchor of this boot, if an earlier run of the agent took one."""
        try:
            state = json.loads(self.state_file.read_text("utf-8"))
            boot = boot_id()
            if boot is None or state.get("boot_id") != boot:
                return
            anchor = Anchor(int(state["wall_ms"]), int(state["mono_ms"]))
            latest = int(state["latest_ms"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            event(log, "ignoring an unreadable clock state", logging.WARNING,
                  file=str(self.state_file), error=str(exc))  # fmt: skip
            return
        self.corrector.anchor, self.corrector.latest_ms = anchor, latest

    def _save(self) -> None:
        anchor, boot = self.corrector.anchor, boot_id()
        if anchor is None or boot is None:
            return
        state = {"boot_id": boot, "wall_ms": anchor.wall_ms, "mono_ms": anchor.mono_ms,
                 "latest_ms": self.corrector.latest_ms}  # fmt: skip
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_file, json.dumps(state).encode())
        except OSError as exc:
            event(log, "clock state not saved", logging.WARNING, error=str(exc))

    # ------------------------------------------------------------- beacons

    def consider(
        self,
        entries: Iterable[tuple[Entry, int | None]],
        clouds: Collection[bytes],
        board_now_ms: Any,
    ) -> list[Draft]:
        """Decide on the beacons among ``entries`` (each with the monotonic ms it
        was received at, None if unknown) signed by ``clouds``: the newest first,
        so an older one that came with it is refused as older. ``board_now_ms()``
        reads the board's clock (its hybrid clock's physical part). Returns the
        ``_clock`` records of the corrections made, to append to the log."""
        beacons: list[tuple[int, Entry, int | None]] = []
        for entry, received in entries:
            if entry.collection != TIME_COLLECTION or entry.author not in clouds:
                continue
            try:
                beacons.append((parse_beacon_body(entry.body).wall_ms, entry, received))
            except ValueError as exc:
                self.invalid += 1
                event(log, "malformed beacon ignored", logging.WARNING,
                      entry=entry.where, error=str(exc))  # fmt: skip
        records: list[Draft] = []
        for wall, entry, received in sorted(beacons, key=lambda b: -b[0]):
            verdict = self.corrector.decide(
                wall, received_mono_ms=received, now_mono_ms=self._mono(),
                board_now_ms=board_now_ms(),
            )  # fmt: skip
            self.corrector.take(verdict)
            self._note(entry, verdict)
            if verdict.outcome == "corrected":
                self._save()
                records.append(Draft(CLOCK_COLLECTION, clock_record(entry, verdict)))
        return records

    def _note(self, entry: Entry, verdict: Verdict) -> None:
        self.outcomes[verdict.outcome] += 1
        cloud = str(NodeId(entry.author))
        self.last = {"outcome": verdict.outcome, "detail": verdict.detail, "cloud": cloud,
                     "seq": entry.seq, "beacon_ms": verdict.wall_ms}  # fmt: skip
        level = {"corrected": logging.WARNING, "too_far_ahead": logging.ERROR}.get(
            verdict.outcome, logging.INFO
        )
        event(log, f"beacon {verdict.outcome}", level, cloud=cloud, seq=entry.seq,
              beacon_ms=verdict.wall_ms, before_ms=verdict.before_ms,
              after_ms=verdict.after_ms, age_ms=verdict.age_ms,
              detail=verdict.detail)  # fmt: skip

    def status(self) -> dict[str, Any]:
        anchor, corrector = self.corrector.anchor, self.corrector
        return {
            "rtc": corrector.rtc,
            "now_ms": self.wall(),
            "anchored": anchor is not None,
            "anchor": None
            if anchor is None
            else {"wall_ms": anchor.wall_ms, "mono_ms": anchor.mono_ms},
            "latest_beacon_ms": corrector.latest_ms,
            "beacons": dict(self.outcomes),
            "invalid": self.invalid,
            "last": self.last,
            "test_offset_ms": self.test_offset_ms or None,
        }


def clock_record(entry: Entry, verdict: Verdict) -> dict[str, Any]:
    """The body of a ``_clock`` entry: a correction, with where it came from."""
    return {
        "before_ms": verdict.before_ms,
        "after_ms": verdict.after_ms,
        "step_ms": verdict.step_ms,
        "first": verdict.first,
        "source": {
            "cloud": str(NodeId(entry.author)),
            "seq": entry.seq,
            "beacon_ms": verdict.wall_ms,
            "age_ms": verdict.age_ms,
        },
    }


def timekeeper_for(home: Home, config: Config, hardware: Hardware | None) -> Timekeeper:
    """The board's clock keeper: ``[clock]``, and whether the board has a real-time
    clock (``[clock] rtc``, else the board profile's ``rtc``)."""
    rtc = config.clock.rtc
    if rtc is None:
        try:
            rtc = (hardware.board if hardware is not None else load_board(config.node.board)).rtc
        except ConfigError:
            rtc = True
    clock = config.clock
    bounds = ClockBounds(
        max_forward_ms=clock.max_forward_ms,
        max_age_ms=int(clock.max_age * 1000),
        min_step_ms=int(clock.min_step * 1000),
    )
    return Timekeeper(bounds, rtc=rtc, state_file=home.state / "clock.json")
