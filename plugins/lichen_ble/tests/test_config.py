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


def test_the_bluez_back_end_names_an_adapter_and_needs_no_hci() -> None:
    instance = configure_plugin(
        "transports", "ble", 0, {"name": "ble", "backend": "bluez", "adapter": "hci1"}, "x.toml"
    )
    assert isinstance(instance.config, BleConfig)
    assert (instance.config.adapter, instance.config.hci) == ("hci1", None)
    assert instance.config.radio == "BlueZ hci1"


def test_the_bluez_back_end_refuses_an_hci_and_a_bad_adapter() -> None:
    bumble_only = r"^x\.toml: \[\[transports\.ble\]\] \"ble\" hci = 'usb:0': is for the bumble"
    with pytest.raises(ConfigError, match=bumble_only) as caught:
        configure_plugin(
            "transports", "ble", 0, {"name": "ble", "backend": "bluez", "hci": "usb:0"}, "x.toml"
        )
    assert 'adapter = "hci0"' in str(caught.value)
    with pytest.raises(ConfigError, match="not a BlueZ adapter name"):
        configure_plugin(
            "transports", "ble", 0, {"name": "ble", "backend": "bluez", "adapter": "wlan0"}, "x.t"
        )


def test_hci_is_required() -> None:
    with pytest.raises(
        ConfigError, match=r'^x\.toml: \[\[transports\.ble\]\] "air" hci: is required'
    ):
        configure_plugin("transports", "ble", 0, {"name": "air"}, "x.toml")


def test_the_command_line_listens_or_dials_with_the_configured_radio() -> None:
    config = parse_config('[[transports.ble]]\nname = "radio"\nhci = "usb:0"\nscan = false\n', "t")
    links = configure_links(config, listen=["ble:"])
    [ble] = links.transports
    assert isinstance(ble.config, BleConfig) and ble.config.listen and not ble.config.scan
    links = configure_links(config, peers=[f"ble:{NODE}"])
    assert links.peers == [f"ble://{NODE}"]
    with pytest.raises(ConfigError, match="needs a radio"):
        BleTransport.config_for(None, None, None)


def test_the_bluez_back_end_imports_its_stacks_only_when_configured() -> None:
    """``import lichen_ble`` loads no Bluetooth stack; a bluez node that only dials
    loads bleak, and no bluezero, dbus-python or GLib (a Pi Zero has 512 MB)."""
    import subprocess
    import sys

    script = """
import asyncio, sys
import lichen_ble
from lichen_ble.tests.helpers import make_transport
assert not {"bleak", "bluezero", "dbus", "gi", "bumble"} & set(sys.modules), "at import"
transport = make_transport(None, 2, backend="bluez", listen=False)
radio = transport._make_radio()
asyncio.run(radio.central.start())
loaded = {"bleak", "bluezero", "dbus", "gi", "bumble"} & set(sys.modules)
assert loaded == {"bleak"}, loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
