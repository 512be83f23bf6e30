"""Testing plugins without hardware: a real agent on a temporary home, and the
contexts a transport or an uplink plugin gets.

:class:`AgentHarness` runs a real :class:`~agent.runtime.agent.Agent` — the
same batching, writer and log as ``lichen run`` — in a background thread,
configured from ``lichen.toml`` text, on any board profile, with the pin
factory you give it (gpiozero's ``MockFactory`` in tests). Tests drive the
hardware double and assert on readings in the log::

    from gpiozero.pins.mock import MockFactory
    from agent.testing import AgentHarness

    def test_button(tmp_path):
        factory = MockFactory()
        config = '[[sensors.gpio_button]]\\nname = "door"\\npin = 17\\n'
        with AgentHarness(config, tmp_path, pin_factory=factory) as agent:
            factory.pin(17).drive_low()            # pressed (pull-up)
            agent.wait_for(lambda: len(agent.readings("readings/door")) >= 1)
        assert agent.readings("readings/door")[0].values == {"pressed": True}

An I²C sensor plugin is tested against simulated chips on a fake bus
(:class:`FakeI2CBus`, :class:`FakeI2CDevice`: registers, hooks, faults),
given to the harness as ``i2c=bus`` — a process-isolated instance uses the
same bus, through the agent::

    bus = FakeI2CBus(1)
    chip = bus.attach(0x48, FakeI2CDevice({0x00: 0x19, 0x01: 0x80}))
    with AgentHarness(config, tmp_path, i2c=bus) as agent:
        agent.wait_for_readings("readings/probe")

A transport or uplink plugin is tested on its own, with the context the agent
would give it faked (:mod:`agent.link_testing`): :class:`FakeTransportContext`
and :class:`FakeUplinkContext`, and :func:`wait_until` for async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .config import parse_config
from .home import Home
from .i2c_fake import FakeI2CBus, FakeI2CDevice
from .identity import Identity
from .link_testing import FakeTransportContext, FakeUplinkContext, wait_until
from .readings import (
    SENSORS_COLLECTION,
    DecodedReading,
    decode_reading_batch,
    describe_id,
    is_reading_batch,
)
from .runtime.agent import Agent
from .runtime.configure import configure_sensors, hardware_for
from .store.documents import Document
from .store.log_store import LogStore

__all__ = [
    "AgentHarness",
    "FakeI2CBus",
    "FakeI2CDevice",
    "FakeTransportContext",
    "FakeUplinkContext",
    "wait_until",
]


class AgentHarness:
    """A running agent for tests. Use as a context manager; it stops cleanly on exit."""

    def __init__(
        self,
        config_text: str,
        home: Path,
        *,
        board: str = "sim",
        pin_factory: Any = None,
        identity: Identity | None = None,
        i2c: FakeI2CBus | Iterable[FakeI2CBus] | None = None,
    ) -> None:
        config = parse_config(config_text, str(home / "lichen.toml"))
        self.home = Home(home)
        buses = None
        if i2c is not None:
            buses = {b.number: b for b in ([i2c] if isinstance(i2c, FakeI2CBus) else i2c)}
        self.hardware = hardware_for(config, board=board, pin_factory=pin_factory, i2c=buses)
        self.identity = identity or Identity.generate()
        self.agent = Agent(
            self.home,
            config,
            self.identity,
            configure_sensors(config, self.hardware),
            hardware=self.hardware,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> AgentHarness:
        self._thread = threading.Thread(target=self._main, name="agent-harness", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await self.agent.run(self._stop)

        try:
            asyncio.run(run())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the agent (sensors stop, pending readings are written)."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended (an error)
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None
        if self._error is not None:
            raise self._error

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Poll ``condition`` until true; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self._error is not None:
                raise self._error
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.02)

    def readings(self, collection: str) -> list[DecodedReading]:
        """Every reading stored so far in ``collection``, in time order."""
        if not self.home.database.exists():
            return []
        with LogStore(self.home.database) as store:
            return [
                reading
                for entry in store.by_time(collection)
                if is_reading_batch(entry.body)
                for reading in decode_reading_batch(entry.body)
            ]

    def wait_for_readings(
        self, collection: str, count: int = 1, timeout: float = 20.0
    ) -> list[DecodedReading]:
        """Wait until ``collection`` holds at least ``count`` readings; all of them,
        in time order."""
        self.wait_for(lambda: len(self.readings(collection)) >= count, timeout)
        return self.readings(collection)

    def values(self, collection: str) -> list[dict[str, Any]]:
        """Just the values of :meth:`readings`."""
        return [reading.values for reading in self.readings(collection)]

    def document(self, collection: str, doc_id: str) -> Document | None:
        """The current version of a document (e.g. a ``_sensors`` description)."""
        if not self.home.database.exists():
            return None
        with LogStore(self.home.database) as store:
            return store.documents.get(collection, doc_id)

    def description(self, collection: str) -> dict[str, Any] | None:
        """What the agent wrote about ``collection`` in its ``_sensors`` document
        (plugin, interval, and ``fields`` with unit / resolution / device class)."""
        document = self.document(
            SENSORS_COLLECTION, describe_id(collection, str(self.identity.node_id))
        )
        return None if document is None else dict(document.body)

    def fields(self, collection: str) -> dict[str, Any]:
        """The fields :meth:`description` gives for ``collection`` (unit, resolution,
        device class per field); AssertionError if the agent wrote none."""
        described = self.description(collection)
        if described is None:
            raise AssertionError(f"the agent has not described {collection!r}")
        fields: dict[str, Any] = described["fields"]
        return fields

    def status(self) -> dict[str, Any]:
        """The agent's status snapshot (as ``lichen status --json`` shows under "agent")."""
        return self.agent.status()
