"""bluezero's thread: a GLib main loop of its own, and calls run in it.

bluezero (on dbus-python) needs a GLib main loop; the agent runs asyncio.
:class:`GLibThread` runs the GLib loop in a daemon thread and hands it calls
whose results come back to the asyncio loop as futures; :func:`resolve`
settles a future from a ``call_soon_threadsafe`` callback, once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["GLibThread", "resolve"]


def resolve(done: asyncio.Future[None], failure: BaseException | None = None) -> None:
    """Settle ``done`` (on its loop) unless it is settled already."""
    if done.done():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


class GLibThread:
    """A GLib main loop in a thread, and a way to run calls in it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from gi.repository import GLib

        self.glib, self.loop = GLib, loop
        self.main_loop = GLib.MainLoop()
        self.thread = threading.Thread(target=self.main_loop.run, name="bluezero", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in the GLib thread; its result (or error) as a future."""
        done: asyncio.Future[Any] = self.loop.create_future()

        def settle(result: Any, failure: BaseException | None) -> None:
            if done.done():
                return
            if failure is not None:
                done.set_exception(failure)
            else:
                done.set_result(result)

        def run() -> bool:
            try:
                result, failure = fn(*args), None
            except Exception as exc:
                result, failure = None, exc
            self.loop.call_soon_threadsafe(settle, result, failure)
            return False  # once

        self.glib.idle_add(run)
        return done

    def stop(self) -> None:
        self.main_loop.quit()
        self.thread.join(5)
