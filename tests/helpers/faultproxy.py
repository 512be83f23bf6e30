"""A fault-injecting TCP proxy: forwards bytes both ways between its clients and
one target, and on command delays, stalls or cuts them.

In-process::

    proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", 7000))
    await proxy.start()            # proxy.address: where clients connect
    proxy.set_delay(200, "up")     # client → target bytes arrive 200 ms late
    proxy.stall()                  # forward nothing; connections stay open
    proxy.cut()                    # reset every connection, refuse new ones
    proxy.restore()                # no delay, no stall, accepting again
    proxy.bytes_up, proxy.bytes_down
    await proxy.close()

As a process::

    python -m tests.helpers.faultproxy --listen HOST:PORT --target HOST:PORT \
        [--control HOST:PORT]

It prints one JSON line ``{"event": "ready", "listen": ..., "control": ...}``
(port 0 picks a free one), then obeys line commands on stdin and, with
``--control``, on each connection to that address: ``delay MS [up|down|both]``,
``stall``, ``cut``, ``restore``, ``stats`` and ``quit``. Every command is
answered with one JSON line: ``ok`` (or ``error``) and the counters. It exits
on ``quit``, on SIGTERM, or when stdin ends and there is no control socket.
:class:`FaultProxyProcess` starts and drives such a process.

"Up" is client → target, "down" target → client. Delay is one-way per
direction and keeps the bytes in order; a stall holds what was read and stops
reading, so the senders' TCP windows fill; a cut resets (RST) both sides of every
connection and closes the listening socket, so new connections are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = ["Direction", "FaultProxy", "FaultProxyProcess", "parse_address"]

Direction = Literal["up", "down", "both"]
CHUNK = 65536
QUEUE_CHUNKS = 64  # per direction and connection: read-ahead while bytes are delayed

ROOT = Path(__file__).resolve().parents[2]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: linger 0, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """One client and its connection to the target: two pipes, each a reader
    task feeding a queue and a writer task emptying it."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        target: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_writer = client[1]
        self.target_writer = target[1]
        self.tasks = [
            *self._pipe(client[0], target[1], "up"),
            *self._pipe(target[0], client[1], "down"),
        ]

    def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> list[asyncio.Task[None]]:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        return [
            asyncio.create_task(self._read(reader, held, direction)),
            asyncio.create_task(self._write(held, writer, direction)),
        ]

    async def _read(
        self,
        reader: asyncio.StreamReader,
        held: asyncio.Queue[tuple[float, bytes]],
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.proxy._flowing.wait()
                data = await reader.read(CHUNK)
                delay = self.proxy.delay_ms[direction] / 1000
                await held.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            self.reset()  # a reset on one side resets the other

    async def _write(
        self,
        held: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await held.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self.proxy._flowing.wait()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                self.proxy._count(direction, len(data))
        except (ConnectionError, OSError):
            self.reset()

    async def run(self) -> None:
        try:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            for writer in (self.client_writer, self.target_writer):
                writer.close()

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client_writer)
        _reset(self.target_writer)


class FaultProxy:
    """The proxy; ``listen`` may use port 0 (see :attr:`address` after :meth:`start`)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self.delay_ms: dict[str, float] = {"up": 0.0, "down": 0.0}
        self.bytes_up = 0
        self.bytes_down = 0
        self.accepted = 0
        self.refused = 0  # target unreachable: the client is reset at once
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut = False
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.listen[0], self.listen[1], reuse_address=True
        )
        # Remember the port actually bound so that a restore after a cut rebinds it.
        self.listen = (self.listen[0], self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            connection.reset()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.listen

    @property
    def connections(self) -> int:
        return len(self._connections)

    # --- faults --------------------------------------------------------------------------

    def set_delay(self, ms: float, direction: Direction = "both") -> None:
        """Delay bytes read from now on by ``ms`` in ``direction`` (0 removes it)."""
        if ms < 0:
            raise ValueError("delay must be >= 0")
        for d in ("up", "down") if direction == "both" else (direction,):
            self.delay_ms[d] = float(ms)

    def stall(self) -> None:
        """Stop forwarding (and reading) both ways; connections stay open."""
        self._flowing.clear()

    def cut(self) -> None:
        """Reset every current connection and refuse new ones until :meth:`restore`."""
        self._cut = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            connection.reset()

    async def restore(self) -> None:
        """No delay, no stall, and accepting again after a cut."""
        self.delay_ms = {"up": 0.0, "down": 0.0}
        self._flowing.set()
        if self._cut:
            self._cut = False
            await self.start()

    def is_cut(self) -> bool:
        return self._cut

    def stats(self) -> dict[str, Any]:
        if self._cut:
            state = "cut"
        elif not self._flowing.is_set():
            state = "stalled"
        else:
            state = "forwarding"
        return {
            "state": state,
            "delay_up_ms": self.delay_ms["up"],
            "delay_down_ms": self.delay_ms["down"],
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "connections": self.connections,
            "accepted": self.accepted,
            "refused": self.refused,
        }

    async def command(self, line: str) -> dict[str, Any]:
        """Apply one control line (see the module doc); the answer to send back."""
        words = line.split()
        try:
            match words:
                case ["delay", ms]:
                    self.set_delay(float(ms))
                case ["delay", ms, ("up" | "down" | "both") as direction]:
                    self.set_delay(float(ms), direction)
                case ["stall"]:
                    self.stall()
                case ["cut"]:
                    self.cut()
                case ["restore"]:
                    await self.restore()
                case ["stats"] | ["quit"]:
                    pass
                case _:
                    raise ValueError(f"unknown command {line.strip()!r}")
        except (ValueError, OSError) as error:
            return {"ok": False, "error": str(error), **self.stats()}
        return {"ok": True, **self.stats()}

    # --- internals -----------------------------------------------------------------------

    def _count(self, direction: str, n: int) -> None:
        if direction == "up":
            self.bytes_up += n
        else:
            self.bytes_down += n

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            _reset(writer)
            return
        try:
            target = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, TimeoutError):
            self.refused += 1
            _reset(writer)
            return
        if self.is_cut():  # cut while dialling
            _reset(writer)
            _reset(target[1])
            return
        self.accepted += 1
        connection = _Connection(self, (reader, writer), target)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)


# --- the process -----------------------------------------------------------------------


async def _serve(listen: str, target: str, control: str | None) -> None:
    proxy = FaultProxy(parse_address(listen), parse_address(target))
    await proxy.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)

    async def answer(line: str) -> str:
        reply = await proxy.command(line)
        if line.split()[:1] == ["quit"]:
            done.set()
        return json.dumps(reply)

    async def controller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := (await reader.readline()).decode():
                if line.strip():
                    writer.write((await answer(line) + "\n").encode())
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    control_server = None
    control_address = None
    if control is not None:
        host, port = parse_address(control)
        control_server = await asyncio.start_server(controller, host, port, reuse_address=True)
        control_address = f"{host}:{control_server.sockets[0].getsockname()[1]}"

    async def read_stdin() -> None:
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := (await stdin.readline()).decode():
            if line.strip():
                print(await answer(line), flush=True)
        if control_server is None:
            done.set()

    host, port = proxy.address
    print(
        json.dumps(
            {
                "event": "ready",
                "listen": f"{host}:{port}",
                "control": control_address,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )
    stdin_task = asyncio.create_task(read_stdin())
    try:
        await done.wait()
    finally:
        stdin_task.cancel()
        await asyncio.gather(stdin_task, return_exceptions=True)
        if control_server is not None:
            control_server.close()
        await proxy.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fault-injecting TCP proxy.")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--target", required=True, metavar="HOST:PORT")
    parser.add_argument("--control", metavar="HOST:PORT", help="also take commands here")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.listen, args.target, args.control))


# --- driving the process ---------------------------------------------------------------


class FaultProxyProcess:
    """The proxy as a child process, driven through its stdin; a context manager.

    ``prefix`` is prepended to the command line, e.g. ``["ip", "netns", "exec", NS]``.
    """

    def __init__(
        self,
        listen: str,
        target: str,
        prefix: Sequence[str] = (),
        control: str | None = None,
        timeout: float = 10,
    ) -> None:
        self.argv = [
            *prefix,
            sys.executable,
            "-m",
            "tests.helpers.faultproxy",
            "--listen",
            listen,
            "--target",
            target,
            *(["--control", control] if control is not None else []),
        ]
        self.timeout = timeout
        self.process: subprocess.Popen[str] | None = None
        self.listen = listen
        self.control = control
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pump_thread: threading.Thread | None = None

    def __enter__(self) -> FaultProxyProcess:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        ready = self._next_line()
        if ready.get("event") != "ready":
            raise RuntimeError(f"faultproxy did not start: {ready}")
        self.listen = str(ready["listen"])
        self.control = ready["control"]

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self) -> dict[str, Any]:
        assert self.process is not None
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise RuntimeError(f"faultproxy did not answer within {self.timeout} s") from None
        if line is None:
            self.process.wait(timeout=self.timeout)
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"faultproxy exited {self.process.returncode}: {stderr.strip()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def command(self, line: str) -> dict[str, Any]:
        """Send one command; its answer (raises if it is not ``ok``)."""
        assert self.process is not None and self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(line.strip() + "\n")
            self.process.stdin.flush()
            reply = self._next_line()
        if not reply.get("ok"):
            raise RuntimeError(f"faultproxy refused {line!r}: {reply}")
        return reply

    def stop(self) -> None:
        """``quit``, then SIGTERM, then SIGKILL, by PID, each after a grace period."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            process.stdin.write("quit\n")
            process.stdin.close()
        for signum in (None, signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            if signum is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.timeout / 2)
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=self.timeout)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    main()
