"""The [[transports.ble]] table and ble:// addresses."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.errors import AddressError, ConfigError
from agent.identity import Identity
from agent.plugins import configure_links, configure_plugin, parse_link_address
from lichen_ble import BleConfig, BleTransport, parse_address

NODE = str(Identity(bytes([1]) * 32).node_id)


def test_addresses_name_a_node_a_device_or_the_radio() -> None:
    assert parse_address(f"ble://{NODE}").url == f"ble://{NODE}"
    assert parse_address(f"ble:{NODE}").url == f"ble://{NODE}"
    assert parse_address("ble://aa:bb:cc:dd:ee:ff").host == "AA:BB:CC:DD:EE:FF"
    assert parse_address("ble:", listen=True).url == "ble://"
    assert parse_link_address("transports", f"ble:{NODE}").url == f"ble://{NODE}"
    assert parse_link_address("transports", "ble:", listen=True).url == "ble://"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("ble://", "names no node"),
        ("ble://lc1abc", "characters"),
        (f"ble://{NODE[:-3]}aaa", "checksum|misspelt"),
        ("tcp://1.2.3.4", "not a ble:// address"),
    ],
)
def test_a_bad_address_says_what_is_wrong_and_how_to_write_one(address: str, problem: str) -> None:
    with pytest.raises(AddressError, match=problem) as caught:
        parse_address(address)
    assert "ble://NODE-ID" in str(caught.value)


def test_listening_takes_no_address() -> None:
    with pytest.raises(AddressError, match="own radio"):
        parse_address(f"ble://{NODE}", listen=True)


def test_the_bluez_back_end_is_a_clear_configuration_error_until_it_exists() -> None:
    with pytest.raises(ConfigError, match="not available yet") as caught:
        configure_plugin(
            "transports", "ble", 0, {"name": "ble", "backend": "bluez", "hci": "usb:0"}, "x.toml"
        )
    assert 'backend = "bumble"' in str(caught.value)


def test_hci_is_required() -> None:
    with pytest.raises(ConfigError, match="hci: is required"):
        configure_plugin("transports", "ble", 0, {"name": "ble"}, "x.toml")


def test_the_command_line_listens_or_dials_with_the_configured_radio() -> None:
    config = parse_config('[[transports.ble]]\nname = "radio"\nhci = "usb:0"\nscan = false\n', "t")
    links = configure_links(config, listen=["ble:"])
    [ble] = links.transports
    assert isinstance(ble.config, BleConfig) and ble.config.listen and not ble.config.scan
    links = configure_links(config, peers=[f"ble:{NODE}"])
    assert links.peers == [f"ble://{NODE}"]
    with pytest.raises(ConfigError, match="needs a radio"):
        BleTransport.config_for(None, None, None)
