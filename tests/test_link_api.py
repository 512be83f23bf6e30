"""Transport and uplink plugins: declared interfaces, discovered and checked at start.

A fixture distribution (found through its dist-info on PYTHONPATH, as an
installed plugin would be) provides a transport and an uplink."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from agent.plugin_api import PeerSighting, Stream, Transport, TransportConfig, Uplink

FIXTURE = Path(__file__).parent / "fixtures" / "links"


def _lichen(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LICHEN_HOME=str(home), PYTHONPATH=str(FIXTURE))
    lichen = Path(sys.executable).with_name("lichen")
    return subprocess.run([str(lichen), *args], env=env, capture_output=True, text=True, timeout=60)


def test_links_are_listed_and_their_tables_checked(home: Path) -> None:
    config = home / "lichen.toml"
    config.write_text(config.read_text() + '\n[[transports.loop]]\nname = "lan"\nport = 70000\n')
    listed = _lichen(home, "plugins", "list").stdout
    assert "  loop            links_fixture    links_fixture:LoopTransport" in listed
    assert "  null            links_fixture    links_fixture:NullUplink" in listed
    assert "[[transports.loop]] name = 'lan'" in listed
    started = _lichen(home, "run")  # refused at start, before anything runs
    assert started.returncode == 2
    assert "[[transports.loop]] #1 port = 70000: must be at most 65535" in started.stderr


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
