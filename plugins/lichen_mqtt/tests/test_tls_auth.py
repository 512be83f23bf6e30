"""TLS with certificates made by ``lichen cloud-cert`` (run as real processes), and
username/password — against a real Mosquitto configured for each."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing import wait_until
from lichen_mqtt import MqttUplink
from lichen_mqtt.tests.context import subscribed
from lichen_mqtt.tests.helpers import fast_config, running, uplink_context
from tests.conftest import run_lichen
from tests.helpers.broker import Broker, free_port, start_broker

pytestmark = pytest.mark.slow

UP = "lichen/v1/+/+/up"
#: the shared broker helper keeps root as the broker's user (see tests/helpers/broker.py)
KEEP_USER = ""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made by
    the real ``lichen cloud-cert`` commands; and a second, unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    run_lichen("cloud-cert", "ca", "--out", str(root / "ca"))
    run_lichen("cloud-cert", "server", "--ca", str(root / "ca"), "--out", str(root / "broker"),
               "--host", "127.0.0.1", "--host", "localhost")  # fmt: skip
    run_lichen("cloud-cert", "client", "--ca", str(root / "ca"), "--out", str(root / "board"),
               "--name", "board-1")  # fmt: skip
    run_lichen("cloud-cert", "ca", "--out", str(root / "stranger"))
    return root


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[tuple[Broker, int]]:
    """Mosquitto with a plain listener (for the test's cloud) and a TLS listener
    that requires a client certificate signed by the CA."""
    port = free_port()
    broker_dir = pki / "broker"
    extra = "\n".join(
        [
            f"listener {port} 127.0.0.1",
            f"cafile {broker_dir / 'ca.pem'}",
            f"certfile {broker_dir / 'server.pem'}",
            f"keyfile {broker_dir / 'server.key'}",
            "require_certificate true",
            KEEP_USER,
        ]
    )
    with start_broker(tmp_path / "broker", extra=extra) as broker:
        yield broker, port


async def test_tls_with_a_client_certificate(
    tmp_path: Path, pki: Path, tls_broker: tuple[Broker, int]
) -> None:
    broker, port = tls_broker
    board = pki / "board"
    context = uplink_context(40)
    config = fast_config(
        f"mqtts://127.0.0.1:{port}",
        ca_file=str(board / "ca.pem"),
        cert_file=str(board / "client.pem"),
        key_file=str(board / "client.key"),
    )
    uplink = MqttUplink(config, context)
    async with (
        subscribed(broker.host, broker.port, [UP], context=context) as cloud,
        running(uplink),
    ):
        await wait_until(lambda: len(cloud.entries) == 40, what="every entry over TLS")
    assert context.states[0] == (True, f"mqtts://127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no client certificate", "may require a client certificate: set cert_file"),
        ("unknown CA", "TLS: the broker's certificate was refused"),
        ("plain MQTT to a TLS port", "write the broker as mqtts://"),
    ],
)
async def test_tls_failures_are_reported_not_raised(
    tmp_path: Path, pki: Path, tls_broker: tuple[Broker, int], case: str, expected: str
) -> None:
    _broker, port = tls_broker
    board = pki / "board"
    options: dict[str, str] = {
        "no client certificate": {"ca_file": str(board / "ca.pem")},
        "unknown CA": {
            "ca_file": str(pki / "stranger" / "ca.pem"),
            "cert_file": str(board / "client.pem"),
            "key_file": str(board / "client.key"),
        },
        "plain MQTT to a TLS port": {},
    }[case]
    scheme = "mqtt" if case.startswith("plain") else "mqtts"
    context = uplink_context(1)
    uplink = MqttUplink(fast_config(f"{scheme}://127.0.0.1:{port}", **options), context)
    async with running(uplink) as task:
        await wait_until(lambda: len(context.states) >= 2, what="failed attempts")
        assert not task.done()
    reasons = [detail or "" for up, detail in context.states if not up]
    assert not any(up for up, _ in context.states)
    assert any(expected in r for r in reasons), reasons


async def test_the_host_name_is_checked_unless_tls_insecure(tmp_path: Path, pki: Path) -> None:
    """A broker whose certificate names another host: refused, unless tls_insecure."""
    from agent.certs import make_server

    other = make_server(pki / "ca", tmp_path / "other", hosts=["broker.invalid"])
    port = free_port()
    extra = f"listener {port} 127.0.0.1\ncafile {other.ca}\ncertfile {other.cert}\n"
    extra += f"keyfile {other.key}\n{KEEP_USER}"
    board = pki / "board"
    tls = {"ca_file": str(board / "ca.pem"), "cert_file": str(board / "client.pem"),
           "key_file": str(board / "client.key")}  # fmt: skip
    with start_broker(tmp_path / "broker", extra=extra):
        strict = uplink_context(1)
        uplink = MqttUplink(fast_config(f"mqtts://127.0.0.1:{port}", **tls), strict)
        async with running(uplink):
            await wait_until(lambda: len(strict.states) >= 1, what="an attempt")
        assert "IP address mismatch" in (strict.states[0][1] or "")
        relaxed = uplink_context(1)
        config = fast_config(f"mqtts://127.0.0.1:{port}", tls_insecure=True, **tls)
        async with running(MqttUplink(config, relaxed)):
            await wait_until(lambda: relaxed.connected, what="the connection")


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    passwords = tmp_path / "passwords"
    subprocess.run([tool, "-b", "-c", str(passwords), "board", "s3cret"], check=True)
    subprocess.run([tool, "-b", str(passwords), "cloud", "cloudpw"], check=True)
    extra = f"allow_anonymous false\npassword_file {passwords}\n{KEEP_USER}"
    with start_broker(tmp_path / "broker", extra=extra) as broker:
        yield broker


async def test_username_and_password(tmp_path: Path, password_broker: Broker) -> None:
    broker = password_broker
    context = uplink_context(10)
    uplink = MqttUplink(fast_config(broker.url, username="board", password="s3cret"), context)
    login = {"username": "cloud", "password": "cloudpw"}
    async with (
        subscribed(broker.host, broker.port, [UP], context=context, **login) as cloud,
        running(uplink),
    ):
        await wait_until(lambda: len(cloud.entries) == 10, what="every entry")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_wrong_password_is_a_clear_state(
    tmp_path: Path, password_broker: Broker, protocol: str
) -> None:
    broker = password_broker
    context = uplink_context(1)
    config = fast_config(broker.url, username="board", password="wrong", protocol=protocol)
    uplink = MqttUplink(config, context)
    async with running(uplink) as task:
        await wait_until(lambda: len(context.states) >= 2, what="failed attempts")
        assert not task.done()
    detail = context.states[0][1] or ""
    assert detail.startswith(f"{broker.url} refused the connection: ")
    assert "Bad user name or password" in detail or "Not authorized" in detail
    assert detail.endswith("(check username 'board' and its password)")
