"""Small asyncio helpers shared by the agent's long-running loops."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "run_until_signalled", "wait_event"]

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that
    arrives as the event is set, and a loop around it then never stops."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, however it ended:
    what they raised (their cancellation too) is retrieved, not raised here."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """``run(stop)``, with ``stop`` set by SIGTERM or SIGINT: how ``lichen run`` and
    ``lichen cloud`` stop cleanly (systemd's stop, Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run(stop)
