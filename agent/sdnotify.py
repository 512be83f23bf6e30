"""The service manager's notification protocol (``sd_notify``), without libsystemd.

Under a ``Type=notify`` unit, systemd passes a datagram socket in
``$NOTIFY_SOCKET``: a path, or an abstract name written with a leading ``@``.
A service sends it newline-separated ``KEY=VALUE`` assignments:

``READY=1``      start-up finished (``systemctl start`` returns, dependents start)
``STATUS=…``     one line for people (``systemctl status lichen`` shows it)
``WATCHDOG=1``   still alive; with ``WatchdogSec=``, systemd kills and restarts
                 a service that stays silent longer (``$WATCHDOG_USEC``)
``STOPPING=1``   shutting down (a stop that takes long is not a hang)

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing, so ``lichen
run`` behaves the same in a terminal. A failed send is never raised: the agent
keeps running whatever the service manager does.

::

    notifier = Notifier.from_environ()
    notifier.notify(READY=1, STATUS="running: 3 sensors")
    if notifier.watchdog_s:  # WATCHDOG=1 while the loop's last turn is recent
        await feed_watchdog(notifier, lambda: last_turn, log)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

from .logs import event

__all__ = ["Notifier", "feed_watchdog", "socket_address"]


def socket_address(value: str) -> str | bytes:
    """The address ``socket.sendto`` takes for a ``$NOTIFY_SOCKET`` value: an
    abstract name (``@name``) as bytes starting with NUL, a path as it is."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends notifications to the service manager (or nowhere, when ``address`` is None).

    ``watchdog_s``: the watchdog timeout in seconds when systemd set one for
    this process (``$WATCHDOG_USEC``, with ``$WATCHDOG_PID`` naming us or absent),
    else None."""

    def __init__(self, address: str | None, *, watchdog_s: float | None = None) -> None:
        if address is not None and not address.startswith(("/", "@")):
            address = None  # systemd passes only absolute paths and abstract names
        self.address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """A notifier for this process, from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC``
        and ``$WATCHDOG_PID``. With ``unset`` (the default) they are removed from
        the environment, so the processes we start (process-isolated plugins) do
        not speak to the service manager in our name."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s = _watchdog_s(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"))
        if unset:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(key, None)
        return cls(address, watchdog_s=watchdog_s)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="running")``); True if
        the datagram was sent, False if there is no service manager or it failed."""
        if self.address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one assignment per line
            lines.append(f"{key}={text}")
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, socket_address(self.address))
        except OSError as exc:
            self.failed += 1
            self.last_error = f"{self.address}: {exc.strerror or exc}"
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1) if self.watchdog_s is not None else False

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))


def _watchdog_s(usec: str | None, pid: str | None) -> float | None:
    """``$WATCHDOG_USEC`` in seconds, if set for this process (``$WATCHDOG_PID``
    absent or naming us) and a positive integer."""
    if not usec:
        return None
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


async def feed_watchdog(
    notifier: Notifier, last_beat: Callable[[], float], log: logging.Logger
) -> None:
    """``WATCHDOG=1`` every half of systemd's timeout while the supervised loop
    turns (``last_beat()``: the ``time.monotonic()`` of its last turn); a loop
    silent for longer than the timeout is stuck (a hung disk write, a blocked
    event loop): no ping, and systemd restarts the service. Each change is
    logged once on ``log``. Runs until cancelled; ``notifier`` has a timeout."""
    watchdog_s = notifier.watchdog_s
    assert watchdog_s is not None
    stuck_reported = False
    while True:
        await asyncio.sleep(watchdog_s / 2)
        silent = time.monotonic() - last_beat()
        if silent <= watchdog_s:
            notifier.watchdog()
            if stuck_reported:
                event(log, "flush loop turning again; watchdog fed", silent_s=round(silent, 1))
                stuck_reported = False
        elif not stuck_reported:
            event(log, "flush loop stuck; watchdog not fed", logging.ERROR,
                  silent_s=round(silent, 1), watchdog_s=watchdog_s)  # fmt: skip
            stuck_reported = True
