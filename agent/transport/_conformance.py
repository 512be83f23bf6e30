"""The conformance suite every :class:`~agent.plugin_api.Stream` passes.

Modelled on Trio's ``check_two_way_stream``: give it a factory of connected
pairs and it runs each check on a fresh pair, closes both ends afterwards and
raises ``AssertionError`` naming the first check that failed. A check that
does not finish within ``timeout`` seconds fails as a hang.

The checks themselves are in :mod:`agent.transport._checks`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from ..link_api import Stream
from ._checks import CHECKS, Options

__all__ = ["CHECKS", "ConformanceReport", "check_transport"]

Pair = tuple[Stream, Stream]
MakePair = Callable[[], Pair | Awaitable[Pair]]


@dataclass
class ConformanceReport:
    """What :func:`check_transport` ran: check names, in order, with seconds taken."""

    passed: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        ran = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.passed.items())
        skipped = f"; skipped: {', '.join(self.skipped)}" if self.skipped else ""
        return f"{len(self.passed)} checks passed ({ran}){skipped}"


async def _make(make_pair: MakePair) -> Pair:
    made = make_pair()
    pair: Pair = await made if inspect.isawaitable(made) else made
    return pair


async def check_transport(
    make_pair: MakePair,
    *,
    large: int = 4 * 2**20,
    backpressure_limit: int = 64 * 2**20,
    settle: float = 0.25,
    timeout: float = 30.0,
    skip: Collection[str] = (),
    only: Collection[str] | None = None,
) -> ConformanceReport:
    """Run the conformance checks on pairs made by ``make_pair``.

    ``make_pair()`` returns two connected streams ``(a, b)`` — or an
    awaitable of them — and is called once per check. The checks:

    ===================================  ==============================================
    ``attributes``                       ``peer`` is text, ``max_frame_hint`` ≥ 1, a
                                         frame of that size arrives intact
    ``ordering``                         many sends of random sizes arrive in order,
                                         each way
    ``zero_length_send``                 ``send(b"")`` sends nothing (and is no EOF)
    ``receive_bounds``                   ``receive(n)`` returns 1 … n bytes;
                                         ``receive(0)`` raises ``ValueError``
    ``large_both_ways``                  ``large`` bytes each way at the same time
    ``concurrent_send_receive``          a pending receive does not hold up a send;
                                         full-duplex echo
    ``backpressure``                     a send to a peer that never reads blocks
                                         before ``backpressure_limit`` bytes, then
                                         everything arrives once the peer reads
    ``half_close``                       after ``send_eof`` the peer reads all, then
                                         ``b""`` (again and again), and can still
                                         answer; a send after ``send_eof`` raises
    ``close_flushes``                    what was sent before ``close`` arrives, then
                                         ``b""``
    ``abrupt_close``                     the peer's pending receive ends (``b""`` or
                                         ``TransportError``); its sends soon raise
                                         ``TransportError``
    ``close_unblocks_peer_send``         a peer blocked in ``send`` gets
                                         ``TransportError`` when we close
    ``close_unblocks_own_operations``    our own pending receive ends and our own
                                         blocked send raises when we close
    ``close_idempotent``                 ``close`` twice, and twice at once; after it
                                         ``send`` and ``receive`` raise
                                         ``TransportError``
    ===================================  ==============================================

    ``large`` sets the volume: ``large`` bytes each way in
    ``large_both_ways``, up to 200 kB in ``close_flushes``, about ``large / 100``
    (at most 450 kB) in ``ordering`` and the echo; lower it for a slow link
    (``large=16_384`` runs :data:`~agent.transport.BLE_GATT` in about 15 s).
    ``settle`` is how long a sender must make no progress to count as
    blocked. ``skip`` and ``only`` select checks by name (see ``CHECKS``).
    A transport plugin runs it in its tests::

        async def test_conformance(transport):
            async def make_pair():
                return await asyncio.gather(transport.connect(url), transport.accept())
            report = await check_transport(make_pair)
    """
    unknown = (set(skip) | set(only or ())) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {', '.join(CHECKS)}")
    options = Options(large=large, backpressure_limit=backpressure_limit, settle=settle)
    report = ConformanceReport()
    for name, check in CHECKS.items():
        if name in skip or (only is not None and name not in only):
            report.skipped.append(name)
            continue
        started = time.monotonic()
        a, b = await _make(make_pair)
        try:
            async with asyncio.timeout(timeout):
                await check(a, b, options)
        except TimeoutError:
            raise AssertionError(
                f"conformance check {name!r} hung: not done after {timeout} s"
            ) from None
        except AssertionError as exc:
            raise AssertionError(f"conformance check {name!r} failed: {exc}") from exc
        except Exception as exc:
            raise AssertionError(
                f"conformance check {name!r} raised {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            await _close_quietly(a, b)
        report.passed[name] = time.monotonic() - started
    return report


async def _close_quietly(*streams: Stream) -> None:
    for stream in streams:
        try:
            async with asyncio.timeout(10):
                await stream.close()
        except Exception:  # the check's own failure matters more
            continue
