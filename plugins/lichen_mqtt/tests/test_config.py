"""The ``[[uplinks.mqtt]]`` table: defaults, broker addresses, and errors that
name the key, the bad value and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.plugins import configure_plugin
from agent.schema import build
from agent.uplink.wire import MAX_PAYLOAD
from lichen_mqtt import MqttConfig, MqttUplink, parse_broker

FILE = "lichen.toml"


def configure(**table: Any) -> MqttConfig:
    table.setdefault("name", "cloud")
    table.setdefault("broker", "mqtt://127.0.0.1:1883")
    config = build(MqttConfig, table, table="[[uplinks.mqtt]] #1", file=FILE)
    assert isinstance(config, MqttConfig)
    return config


def test_defaults() -> None:
    config = configure()
    assert (config.fleet, config.topic_prefix, config.protocol) == ("default", "lichen/v1", "auto")
    assert (config.window, config.max_payload, config.keepalive) == (20, MAX_PAYLOAD, 60)
    assert (config.reconnect_min, config.reconnect_max) == (1.0, 120.0)
    assert not config.tls and not config.tls_insecure and not config.homeassistant
    assert config.effective_client_id("lc1abc") == "lichen-lc1abc-cloud"
    assert configure(client_id="board-7").effective_client_id("lc1abc") == "board-7"


def test_the_entry_point_configures_the_plugin() -> None:
    table = {"name": "cloud", "broker": "mqtts://broker.example.net"}
    configured = configure_plugin("uplinks", "mqtt", 0, table, FILE)
    assert configured.cls is MqttUplink
    assert configured.config.address.port == 8883 and configured.config.tls


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("mqtt://localhost", "mqtt", "localhost", 1883),
        ("mqtts://broker.example.net", "mqtts", "broker.example.net", 8883),
        ("mqtt://10.0.0.5:1884/", "mqtt", "10.0.0.5", 1884),
        ("mqtts://[fd00::7]:8884", "mqtts", "fd00::7", 8884),
        ("mqtt://[::1]", "mqtt", "::1", 1883),
    ],
)
def test_broker_addresses(text: str, scheme: str, host: str, port: int) -> None:
    address = parse_broker(text)
    assert (address.scheme, address.host, address.port) == (scheme, host, port)
    assert parse_broker(address.url) == address


def test_tls_turns_on_with_mqtts_or_any_tls_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert configure(broker="mqtts://h").tls
    assert configure(ca_file=str(ca)).tls
    assert not configure(broker="mqtt://h").tls


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"broker": "http://x:1883"}, "broker", ["'http://x:1883'", "mqtt://", "Fix:"]),
        ({"broker": "mqtt://user:pw@x"}, "broker", ["credentials go in username"]),
        ({"broker": "mqtt://x:99999"}, "broker", ["1 to 65535"]),
        ({"broker": "mqtt://::1:1883"}, "broker", ["brackets"]),
        ({"window": 0}, "window", ["= 0", "at least 1", "PUBACK"]),
        ({"window": 101}, "window", ["at most 100"]),
        ({"max_payload": 200_000}, "max_payload", [f"at most {MAX_PAYLOAD}"]),
        ({"protocol": "4"}, "protocol", ["'auto', '5', '3.1.1'"]),
        ({"fleet": "a/b"}, "fleet", ["'a/b'", "one MQTT topic level"]),
        ({"topic_prefix": "lichen/#"}, "topic_prefix", ["+ #"]),
        ({"keepalive": 1}, "keepalive", ["at least 5"]),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file", ["'/nonexistent/ca.pem'", "no such file"]),
        ({"cert_file": "/nonexistent/c.pem"}, "cert_file", ["no such file", "cloud-cert"]),
        ({"reconnect_min": 5.0, "reconnect_max": 2.0}, "reconnect_max", ["below reconnect_min"]),
        ({"password": "secret"}, "password", ["without username"]),
        ({"window": "20"}, "window", ["must be an integer, not str"]),
    ],
)
def test_errors_name_the_key_the_value_and_the_fix(
    table: dict[str, Any], key: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        configure(**table)
    message = str(caught.value)
    assert message.startswith(f"{FILE}: [[uplinks.mqtt]] ")
    assert f" {key}" in message.split(":")[1]
    assert "Fix:" in message
    for word in words:
        assert word in message
    assert "secret" not in message  # a password is never echoed


def test_key_file_needs_cert_file(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("x")
    with pytest.raises(ConfigError, match=r"key_file = '.*client.key': is set without cert_file"):
        configure(key_file=str(key))


def test_an_unreadable_tls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "client.pem"
    key.write_text("x")
    key.chmod(0)
    if os.geteuid() == 0:  # root reads every file: ask as if this were the agent's user
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"cert_file .*not readable"):
        configure(cert_file=str(key))


def test_an_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match='did you mean "broker"'):
        build(MqttConfig, {"name": "c", "brokr": "x"}, table="[[uplinks.mqtt]] #1", file=FILE)


def test_broker_is_required() -> None:
    with pytest.raises(ConfigError, match=r"broker: is required. Fix: the broker, e.g."):
        build(MqttConfig, {"name": "c"}, table="[[uplinks.mqtt]] #1", file=FILE)
