"""Transport and uplink plugins: declared interfaces, discovered and checked at start.

A fixture distribution (found through its dist-info on PYTHONPATH, as an
installed plugin would be) provides a transport and an uplink."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import AddressError, PluginError
from agent.plugin_api import (
    LinkAddress,
    PeerSighting,
    Stream,
    Transport,
    TransportConfig,
    Uplink,
)
from agent.plugins import configure_links

FIXTURE = Path(__file__).parent / "fixtures" / "links"


def _lichen(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LICHEN_HOME=str(home), PYTHONPATH=str(FIXTURE))
    lichen = Path(sys.executable).with_name("lichen")
    return subprocess.run([str(lichen), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_links_are_listed_and_their_tables_checked(home: Path) -> None:
    config = home / "lichen.toml"
    config.write_text(config.read_text() + '\n[[transports.loop]]\nname = "lan"\nport = 70000\n')
    listed = _lichen(home, "plugins", "list").stdout
    assert "  loop            links_fixture    links_fixture:LoopTransport" in listed
    assert "  null            links_fixture    links_fixture:NullUplink" in listed
    assert "[[transports.loop]] name = 'lan'" in listed
    started = _lichen(home, "run")  # refused at start, before anything runs
    assert started.returncode == 2
    assert '[[transports.loop]] "lan" port = 70000: must be at most 65535' in started.stderr


def test_the_base_classes_say_what_is_missing() -> None:
    class Mute(Transport):
        pass

    transport = Mute(TransportConfig(name="x"), context=None)  # type: ignore[arg-type]

    async def exercise() -> list[PeerSighting]:
        await transport.start()
        return [s async for s in transport.sightings()]

    assert asyncio.run(exercise()) == []
    for call in (transport.accept(), transport.connect("x://y")):
        try:
            asyncio.run(call)
        except NotImplementedError as exc:
            assert "Mute" in str(exc)
        else:
            raise AssertionError("expected NotImplementedError")
    assert Stream.__doc__ and "back-pressure" in Stream.__doc__
    assert issubclass(Uplink, object) and Uplink.Config.__name__ == "UplinkConfig"


def test_addresses_are_parsed_by_the_plugin_and_default_to_scheme_address() -> None:
    class Radio(Transport):
        scheme = "radio"

    class Cloud(Uplink):
        schemes = ("cloud", "clouds")

    assert Radio.parse_address("radio://7f") == LinkAddress("radio", "7f")
    assert Cloud.parse_address("clouds://x").url == "clouds://x"
    for bad in ("tcp://h:1", "radio://", "radio:/x", "radio://a b"):
        with pytest.raises(AddressError, match=re.escape(repr(bad))):
            Radio.parse_address(bad)
    config = Radio.config_for(None, None)
    assert config == TransportConfig(name="radio")
    with pytest.raises(PluginError, match="takes no listen address"):
        Radio.config_for("r", LinkAddress("radio", "7f"))
    with pytest.raises(PluginError, match="takes no address"):
        Cloud.config_for("c", LinkAddress("cloud", "x"))
    assert LinkAddress("tcp", "fd00::7", 7400).url == "tcp://[fd00::7]:7400"


def test_command_line_addresses_make_instances_and_leave_the_config_alone() -> None:
    config = parse_config(
        '[[transports.tcp]]\nname = "wifi"\nkeepalive_idle = 12.0\n'
        'peers = ["tcp://10.0.0.9:7400"]\n\n[[transports.tcp]]\nname = "eth"\n'
        '\n[[uplinks.mqtt]]\nname = "up"\nbroker = "mqtt://a:1883"\nfleet = "farm"\n'
    )
    before = copy.deepcopy(config.plugins)
    links = configure_links(
        config,
        listen=["tcp://127.0.0.1:7501", "tcp://127.0.0.1:7502"],
        peers=["tcp://10.0.0.3", "tcp://10.0.0.4:9"],
        uplinks=["mqtts://broker.lan"],
    )
    assert config.plugins == before  # nothing written into the loaded configuration
    tcp = [link.config for link in links.transports]
    assert [(c.name, c.host, c.port, c.listen) for c in tcp] == [
        ("wifi", "127.0.0.1", 7501, True),
        ("wifi-2", "127.0.0.1", 7502, True),
    ]
    assert all(c.keepalive_idle == 12.0 and c.peers == ["tcp://10.0.0.9:7400"] for c in tcp)
    assert links.peers == ["tcp://10.0.0.3:7400", "tcp://10.0.0.4:9"]
    (up,) = [link.config for link in links.uplinks]
    assert (up.name, up.broker, up.fleet) == ("up", "mqtts://broker.lan:8883", "farm")
    # --peer alone: an instance that only dials out is added
    alone = configure_links(parse_config(""), peers=["tcp://10.0.0.3"])
    (dialer,) = [link.config for link in alone.transports]
    assert (dialer.name, dialer.listen) == ("tcp", False)
    with pytest.raises(AddressError, match="no installed transport plugin serves lora://"):
        configure_links(parse_config(""), peers=["lora://1"])
