"""What the BLE tests share: transports on an in-process emulated link."""

from __future__ import annotations

import itertools
from typing import Any

from agent.identity import Identity
from agent.testing import FakeTransportContext
from lichen_ble import BleConfig, BleTransport

_links = itertools.count()


def local_link() -> str:
    """A fresh in-process Bumble LocalLink, as an ``hci`` value."""
    from bumble.link import LocalLink

    from lichen_ble.bumble_radio import register_local_link

    name = f"test-{next(_links)}"
    register_local_link(name, LocalLink())
    return f"local:{name}"


def make_transport(
    hci: str | None, seed: int, digest: str = "00" * 8, **config: Any
) -> BleTransport:
    identity = Identity(bytes([seed]) * 32)
    settings: dict[str, Any] = {"name": "ble", "hci": hci, **config}
    node_id = str(identity.node_id)
    context = FakeTransportContext(node_id, digest=digest, name=node_id[:12])
    return BleTransport(BleConfig(**settings), context)
