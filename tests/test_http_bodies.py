"""Request bodies on the shared HTTP server (agent.http): spooled to a file past
256 KiB, refused past ``max_body`` before they are read, and at most
``max_per_client`` connections from one host; an address it cannot listen on
is one ServeError. Real sockets, a real server."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import http.client
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.errors import LichenError
from agent.http import SPOOL_MEMORY, HttpServer, Request, Response, ServeError, json_response

LIMIT = 2 * 1024 * 1024


class Echo:
    """Answers with the body's size and hash, and where it was held."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if request.body is None:
            return json_response(200, {"size": 0})
        on_disk = not isinstance(getattr(request.body, "_file", None), __import__("io").BytesIO)
        data = request.body.read()
        return json_response(200, {"size": len(data), "sha": hashlib.sha256(data).hexdigest(),
                                   "on_disk": on_disk, "declared": request.body_size})  # fmt: skip


def post(port: int, body: bytes | Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/x", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


async def test_bodies_up_to_the_limit_arrive_whole_and_large_ones_are_spooled(
    tmp_path: Path,
) -> None:
    app = Echo()
    server = HttpServer(app, "127.0.0.1", 0, max_body=LIMIT, spool_dir=tmp_path)
    await server.start()
    try:
        small, large = os.urandom(1000), os.urandom(SPOOL_MEMORY + 100_000)
        for body, disk in ((small, False), (large, True)):
            code, answer = await asyncio.to_thread(post, server.port, body)
            assert code == 200 and answer["size"] == len(body) == answer["declared"]
            assert answer["sha"] == hashlib.sha256(body).hexdigest()
            assert answer["on_disk"] is disk
        # chunked (no Content-Length), in pieces
        pieces = [os.urandom(50_000) for _ in range(6)]
        code, answer = await asyncio.to_thread(post, server.port, iter(pieces))
        assert code == 200 and answer["sha"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    finally:
        await server.close()
    assert all(r.body is None or r.body.closed for r in app.requests)
    assert not list(tmp_path.iterdir())  # every spool file is gone


async def test_a_body_past_the_limit_is_refused_before_it_is_read() -> None:
    app = Echo()
    server = HttpServer(app, "127.0.0.1", 0, max_body=LIMIT)
    await server.start()
    try:

        def declared_only() -> bytes:
            # headers announcing 1 GB, and no body: the answer must come without it
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return data

        answer = await asyncio.to_thread(declared_only)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"1000000000 bytes" in answer
        # a chunked body is cut off as it passes the limit, and the client reads why
        pieces = [os.urandom(256 * 1024) for _ in range(12)]
        code, refusal = await asyncio.to_thread(post, server.port, iter(pieces))
        assert code == 413 and "exceeds the limit" in refusal["error"]
    finally:
        await server.close()
    assert app.requests == []  # the application never saw any of them
    assert server.too_large == 2
    # a server that takes no bodies reads past them and keeps none
    closed = HttpServer(app, "127.0.0.1", 0)
    await closed.start()
    try:
        code, echoed = await asyncio.to_thread(post, closed.port, os.urandom(LIMIT * 2))
        assert code == 200 and echoed == {"size": 0}
    finally:
        await closed.close()
    assert len(app.requests) == 1 and app.requests[0].body is None


async def test_one_host_holds_at_most_max_per_client_connections() -> None:
    server = HttpServer(Echo(), "127.0.0.1", 0, max_per_client=2)
    await server.start()
    try:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            for _ in range(100):  # both accepted by the server
                if server.counters()["open"] == 2:
                    break
                await asyncio.sleep(0.02)
            code, refusal = await asyncio.to_thread(post, server.port, b"")
            assert code == 429 and "2 connections" in refusal["error"]
        finally:
            for s in held:
                s.close()
        for _ in range(200):
            if server.counters()["open"] == 0:
                break
            await asyncio.sleep(0.02)
        code, _ = await asyncio.to_thread(post, server.port, b"")
        assert code == 200 and server.crowded == 1
    finally:
        await server.close()


async def test_closing_with_a_client_connected_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = HttpServer(Echo(), "127.0.0.1", 0)
    await server.start()
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        for _ in range(100):
            if server.counters()["open"] == 1:
                break
            await asyncio.sleep(0.02)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            await server.close()
            for _ in range(5):
                await asyncio.sleep(0)  # the start_server callback runs after the task ends
        assert [r for r in caplog.records if r.name == "asyncio"] == []
    finally:
        idle.close()


async def test_the_spool_directory_is_made_when_the_server_starts(tmp_path: Path) -> None:
    """The cloud spools uploads in HOME/run/uploads, which a new home does not have."""
    spool = tmp_path / "run" / "uploads"
    server = HttpServer(Echo(), "127.0.0.1", 0, max_body=LIMIT, spool_dir=spool)
    await server.start()
    try:
        body = os.urandom(SPOOL_MEMORY + 1)
        code, answer = await asyncio.to_thread(post, server.port, body)
        assert code == 200 and answer["on_disk"] and answer["size"] == len(body)
    finally:
        await server.close()
    assert spool.is_dir() and not list(spool.iterdir())


async def test_a_taken_address_is_one_error_naming_it_the_reason_and_the_fix() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        for host in ("127.0.0.1", "localhost"):
            server = HttpServer(Echo(), host, port, serves="the test page",
                                address_fix="[test] listen")  # fmt: skip
            with pytest.raises(ServeError) as caught:
                await server.start()
            error = caught.value
            assert isinstance(error, LichenError) and isinstance(error, OSError)
            assert error.errno == errno.EADDRINUSE and error.address == f"{host}:{port}"
            where = "" if host == "127.0.0.1" else ", at 127.0.0.1"
            assert str(error) == (
                f"cannot serve the test page on {host}:{port}: address already in use "
                f"(EADDRINUSE{where}). Fix: [test] listen"
            )
        plain = HttpServer(Echo(), "127.0.0.1", port)  # what it serves and the fix by default
        with pytest.raises(ServeError, match=r"^cannot serve HTTP on 127\.0\.0\.1:\d+: address "
                           r"already in use \(EADDRINUSE\)\. Fix: another HOST:PORT \(port 0 picks "
                           r"a free one\)$"):  # fmt: skip
            await plain.start()
    finally:
        taken.close()
