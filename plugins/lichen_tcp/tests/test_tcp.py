"""The TCP transport over loopback: conformance, static peers, failures, configuration."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import socket
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import AddressError, ConfigError, TransportError
from agent.plugin_api import LinkAddress, Stream
from agent.plugins import configure_plugin, load_plugin
from agent.transport import AsyncioStream, check_transport
from lichen_tcp import DEFAULT_PORT, TcpConfig, TcpTransport, format_address, parse_address
from lichen_tcp.tests.helpers import make_transport

SAMPLE = Path(__file__).resolve().parents[1] / "sample.toml"


@pytest.fixture
async def listening() -> AsyncIterator[TcpTransport]:
    transport = make_transport("lc1server")
    await transport.start()
    yield transport
    await transport.close()


@pytest.mark.slow
async def test_tcp_streams_pass_the_conformance_suite(listening: TcpTransport) -> None:
    client = make_transport("lc1client", listen=False)

    async def make_pair() -> tuple[Stream, Stream]:
        a, b = await asyncio.gather(client.connect(listening.address), listening.accept())
        return a, b

    report = await check_transport(make_pair)
    assert not report.skipped and len(report.passed) == 13, report


async def test_two_transports_connect_by_static_address(listening: TcpTransport) -> None:
    client = make_transport(
        "lc1client", listen=False, peers=[listening.address.removeprefix("tcp://")]
    )
    await client.start()
    try:
        async with contextlib.aclosing(client.sightings()) as sightings:
            static = await anext(sightings)
        assert (static.address, static.node_id, static.heads_digest) == (
            listening.address,
            None,
            None,
        )
        outgoing = await client.connect(static.address)
        incoming = await listening.accept()
        assert isinstance(outgoing, AsyncioStream) and isinstance(incoming, AsyncioStream)
        assert outgoing.peer == listening.address
        assert incoming.peer.startswith("tcp://127.0.0.1:") and incoming.peer != listening.address
        assert outgoing.max_frame_hint > 500
        await outgoing.send(b"ping")
        assert await incoming.receive() == b"ping"
        await incoming.send(b"pong")
        assert await outgoing.receive() == b"pong"
        for stream in (outgoing, incoming):
            sock = stream._writer.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
            await stream.close()
    finally:
        await client.close()


async def test_a_refused_connection_is_a_transport_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_transport(listen=False)
    with pytest.raises(TransportError, match=rf"cannot connect to tcp://127.0.0.1:{port}"):
        await client.connect(f"tcp://127.0.0.1:{port}")
    with pytest.raises(ValueError, match="not a tcp:// address"):
        await client.connect("ble://aa:bb")


async def test_a_connection_that_never_completes_times_out() -> None:
    with socket.socket() as full:  # a listener whose queue is full drops new SYNs
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        address = format_address(*full.getsockname())
        client = make_transport(listen=False, connect_timeout=0.2)
        held = []
        try:
            with pytest.raises(TransportError, match=r"timed out after 0\.2 s"):
                for _ in range(4):  # the first one or two fit in the queue
                    held.append(await client.connect(address))
        finally:
            for stream in held:
                await stream.close()


async def test_a_full_accept_queue_stops_accepting_and_waiters_wake_on_close() -> None:
    server = make_transport("lc1server", accept_queue=1)
    await server.start()
    client = make_transport(listen=False)
    streams = [await client.connect(server.address) for _ in range(3)]
    for n, stream in enumerate(streams):  # none refused: they waited for room, in order
        await stream.send(bytes([n]))
    for n in range(3):
        accepted = await server.accept()
        assert await accepted.receive() == bytes([n])
        streams.append(accepted)
    waiter = asyncio.create_task(server.accept())
    await asyncio.sleep(0)
    await server.close()
    with pytest.raises(TransportError, match="is closed"):
        await waiter
    with pytest.raises(TransportError, match="is closed"):
        await server.accept()
    for stream in streams:
        await stream.close()
    with pytest.raises(TransportError):
        await client.connect(server.address)  # nobody listens any more
    async with contextlib.aclosing(server.sightings()) as sightings:
        assert [s async for s in sightings] == []


async def test_a_transport_that_only_dials_accepts_nothing() -> None:
    """Without ``listen`` nothing ever comes: ``accept`` raises NotImplementedError
    (the agent's accept loop then ends) rather than an error to retry and log."""
    client = make_transport(listen=False)
    await client.start()
    try:
        with pytest.raises(NotImplementedError, match="is not listening"):
            await client.accept()
    finally:
        await client.close()


async def test_connections_beyond_the_queue_are_left_to_the_kernel() -> None:
    """While the agent takes nothing, the transport takes at most accept_queue + 1
    connections from the kernel (the rest wait in its backlog): a flood costs
    this process nothing until the agent asks for more."""
    server = make_transport("lc1server", accept_queue=2)
    await server.start()
    client = make_transport(listen=False)
    try:
        streams = [await client.connect(server.address) for _ in range(6)]
        async with asyncio.timeout(10):
            while not server._incoming.full():
                await asyncio.sleep(0.01)
        for _ in range(100):  # every chance for the accept loop to take more
            await asyncio.sleep(0)
        assert server._incoming.qsize() == 2
        accepted = [await server.accept() for _ in range(6)]
        assert len(accepted) == 6
        for stream in streams + accepted:
            await stream.close()
    finally:
        await server.close()


async def test_without_zeroconf_it_says_so_and_keeps_static_peers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "zeroconf", None)  # import zeroconf → ImportError
    monkeypatch.setitem(sys.modules, "zeroconf.asyncio", None)
    transport = make_transport(advertise=True, browse=True, peers=["tcp://192.0.2.7:7400"])
    with caplog.at_level(logging.WARNING):
        await transport.start()
    try:
        assert "zeroconf is not installed: no mDNS discovery, static peers only" in caplog.text
        assert transport.mdns is None
        transport.heads_changed()  # harmless
        async with contextlib.aclosing(transport.sightings()) as sightings:
            assert (await anext(sightings)).address == "tcp://192.0.2.7:7400"
    finally:
        await transport.close()


def test_addresses_parse_and_format() -> None:
    assert parse_address("tcp://10.0.0.2:7400") == LinkAddress("tcp", "10.0.0.2", 7400)
    assert parse_address("pi.local:80") == LinkAddress("tcp", "pi.local", 80)
    assert parse_address("tcp://[fd00::7]:7400") == LinkAddress("tcp", "fd00::7", 7400)
    assert format_address("fd00::7", 7400) == "tcp://[fd00::7]:7400"
    assert format_address("10.0.0.2", 1) == "tcp://10.0.0.2:1"
    for bad in ("tcp://:7400", "tcp://h:0", "tcp://h:99999", "udp://h:1",
                "tcp://fd00::7:7400", "tcp://[fd00::7]7400", "tcp://a b:1"):  # fmt: skip
        with pytest.raises(AddressError):
            parse_address(bad)
    # the plugin's parser is the one of the public API
    assert TcpTransport.parse_address("tcp://h:1") == parse_address("tcp://h:1")
    assert parse_address("tcp://127.0.0.1:0", listen=True).port == 0
    with pytest.raises(AddressError, match="is not an IP address"):
        parse_address("tcp://pi.local:7400", listen=True)


def test_the_port_defaults_to_the_documented_one() -> None:
    assert parse_address("tcp://10.0.0.2") == LinkAddress("tcp", "10.0.0.2", DEFAULT_PORT)
    assert parse_address("tcp://[fd00::7]").url == f"tcp://[fd00::7]:{DEFAULT_PORT}"
    assert DEFAULT_PORT == 7400 and TcpConfig(name="x").port == DEFAULT_PORT


@pytest.mark.parametrize("address", ["tcp://h:99999", "tcp://h:abc", "tcp://h:-1"])
def test_a_bad_port_names_the_address_and_the_fix(address: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(address)
    message = str(caught.value)
    assert message.startswith(f"{address!r}: the port must be a number from 1 to 65535. Fix: ")
    assert "tcp://HOST:PORT" in message
    with pytest.raises(ConfigError) as in_config:
        _configure({"name": "lan", "peers": [address]})
    message = str(in_config.value)
    assert '[[transports.tcp]] "lan" peers' in message and repr(address) in message
    assert "the port must be a number from 1 to 65535" in message and "Fix: " in message


def _configure(table: dict[str, object]) -> TcpConfig:
    configured = configure_plugin("transports", "tcp", 0, table, "lichen.toml")
    assert isinstance(configured.config, TcpConfig)
    return configured.config


def test_the_table_is_checked_with_precise_errors() -> None:
    assert load_plugin("transports", "tcp") is TcpTransport
    config = _configure({"name": "wifi", "port": 0, "peers": ["tcp://10.0.0.2:7400"]})
    assert (config.port, config.peers, config.host) == (0, ["tcp://10.0.0.2:7400"], "0.0.0.0")
    wrong = {
        "port": (70000, "must be at most 65535"),
        "peers": (["10.0.0.2:x"], "the port must be a number from 1 to 65535"),
        "interfaces": (["wlan0"], "is not an IPv4 address"),
        "host": ("my-pi", "is not an IP address"),
        "announce_interval": (0.1, "must be at least 1.0"),
        "prot": (1, 'did you mean "port"?'),
    }
    for key, (value, problem) in wrong.items():
        with pytest.raises(ConfigError) as caught:
            _configure({"name": "wifi", key: value})
        message = str(caught.value)
        assert f'[[transports.tcp]] "wifi" {key}' in message and problem in message


#: "# key = value   # comment": the lines a user uncomments
SETTING = re.compile(r"^# (\w+ = .*)$")


@pytest.mark.parametrize("commented", [False, True], ids=["as-is", "uncommented"])
def test_the_sample_configures_and_shows_every_key_with_its_default(commented: bool) -> None:
    text = SAMPLE.read_text()
    if commented:
        lines = text.splitlines()
        text = "\n".join(m.group(1) if (m := SETTING.match(line)) else line for line in lines)
    config = parse_config(text, str(SAMPLE))
    tables = config.plugins["transports"]["tcp"]
    assert [_configure(table).name for table in tables] == ["wifi"]
    if commented:
        shown = tomllib.loads(text)["transports"]["tcp"][0]
        for f in dataclasses.fields(TcpConfig):
            assert f.name in shown, f"sample.toml never shows {f.name!r}"
            if f.name != "name":
                default = (
                    f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                )
                assert shown[f.name] == default, f"{f.name}: {shown[f.name]!r} != {default!r}"
