"""The fault-injecting TCP proxy, over real loopback sockets to an echo server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.helpers.faultproxy import FaultProxy, FaultProxyProcess, parse_address

LOCAL = "127.0.0.1"


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, LOCAL, 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy((LOCAL, 0), (LOCAL, port)) as p:
        yield p
    server.close()
    await server.wait_closed()


async def _connect(
    proxy: FaultProxy,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*proxy.address)


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> float:
    start = time.monotonic()
    writer.write(data)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(data)), 5) == data
    return time.monotonic() - start


async def _wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_forwards_both_ways_and_counts_bytes(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    payload = bytes(range(256)) * 1024  # 256 KiB, more than one read
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
    await _wait_for(lambda: proxy.bytes_down == len(payload))
    assert proxy.bytes_up == len(payload)
    assert proxy.connections == 1
    # a half-close travels through: the echo server ends, and so does our stream
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await _wait_for(lambda: proxy.connections == 0)
    assert proxy.stats()["accepted"] == 1


@pytest.mark.slow
async def test_one_way_delay(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"x") < 0.15
    proxy.set_delay(200, "up")
    assert 0.2 <= await _round_trip(reader, writer, b"y") < 0.6
    proxy.set_delay(200, "down")
    assert 0.4 <= await _round_trip(reader, writer, b"z") < 0.9
    proxy.set_delay(0)
    assert await _round_trip(reader, writer, b"w") < 0.15
    # delay is latency, not a throttle: a burst of writes arrives ~once-delayed, in order
    proxy.set_delay(150, "both")
    start = time.monotonic()
    chunks = [bytes([i]) * 1000 for i in range(50)]
    for chunk in chunks:
        writer.write(chunk)
        await asyncio.sleep(0.002)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(50_000), 5) == b"".join(chunks)
    assert 0.3 <= time.monotonic() - start < 1.5
    writer.close()


async def test_stall_holds_bytes_and_keeps_the_connection(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    await _round_trip(reader, writer, b"before")
    up, down = proxy.bytes_up, proxy.bytes_down
    proxy.stall()
    assert proxy.stats()["state"] == "stalled"
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(100), 0.5)
    assert (proxy.bytes_up, proxy.bytes_down) == (up, down)
    assert proxy.connections == 1
    assert not reader.at_eof()
    await proxy.restore()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
    assert proxy.bytes_up == up + 4
    writer.close()


async def test_cut_resets_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    await _round_trip(reader, writer, b"ping")
    proxy.cut()
    assert proxy.stats()["state"] == "cut"
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await _connect(proxy)
    await _wait_for(lambda: proxy.connections == 0)
    await proxy.restore()
    reader, writer = await _connect(proxy)
    await _round_trip(reader, writer, b"again")
    assert proxy.stats()["accepted"] == 2
    writer.close()


async def test_unreachable_target_resets_the_client() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind((LOCAL, 0))
        port = s.getsockname()[1]
    async with FaultProxy((LOCAL, 0), (LOCAL, port)) as p:
        reader, writer = await asyncio.open_connection(*p.address)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        assert p.refused == 1


async def test_control_lines(proxy: FaultProxy) -> None:
    assert (await proxy.command("delay 50 down"))["delay_down_ms"] == 50
    assert (await proxy.command("stall"))["state"] == "stalled"
    reply = await proxy.command("restore")
    assert reply["ok"] and reply["state"] == "forwarding" and reply["delay_down_ms"] == 0
    assert not (await proxy.command("delay soon"))["ok"]
    assert not (await proxy.command("delay -5"))["ok"]
    assert not (await proxy.command("frobnicate"))["ok"]


def test_parse_address() -> None:
    assert parse_address("10.0.0.1:80") == ("10.0.0.1", 80)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    with pytest.raises(ValueError):
        parse_address("nohost")


# --- as a process ----------------------------------------------------------------------


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the proxy's cut resets us
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    with socketserver.ThreadingTCPServer((LOCAL, 0), _EchoHandler) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address[1]
        server.shutdown()


def _echo_once(address: str, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(parse_address(address), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.slow
def test_process_obeys_stdin_and_control_socket(echo_port: int) -> None:
    with FaultProxyProcess(f"{LOCAL}:0", f"{LOCAL}:{echo_port}", control=f"{LOCAL}:0") as process:
        assert _echo_once(process.listen, b"hello" * 1000) == b"hello" * 1000
        stats = process.command("stats")
        assert stats["bytes_up"] == stats["bytes_down"] == 5000

        process.command("cut")
        with pytest.raises(ConnectionRefusedError):
            _echo_once(process.listen, b"x")
        process.command("restore")
        assert _echo_once(process.listen, b"back") == b"back"

        assert process.control is not None
        with socket.create_connection(parse_address(process.control), timeout=5) as control:
            lines = control.makefile("rw")
            lines.write("delay 300 up\n")
            lines.flush()
            reply = json.loads(lines.readline())
            assert reply["ok"] and reply["delay_up_ms"] == 300
        start = time.monotonic()
        assert _echo_once(process.listen, b"slow") == b"slow"
        assert time.monotonic() - start >= 0.3

        with pytest.raises(RuntimeError, match="unknown command"):
            process.command("explode")
    assert process.process is not None and process.process.returncode == 0
