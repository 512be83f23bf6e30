"""What the BLE tests share: a context, transports on an in-process emulated link."""

from __future__ import annotations

import itertools
import logging
from typing import Any

from agent.identity import Identity
from lichen_ble import BleConfig, BleTransport

_links = itertools.count()


class Context:
    """The :class:`~agent.plugin_api.TransportContext` a test gives a transport."""

    def __init__(self, identity: Identity, digest: str = "00" * 8) -> None:
        self.identity = identity
        self.name = str(identity.node_id)[:12]
        self.log = logging.getLogger(f"lichen.transport.test.{self.name}")
        self.digest = digest

    @property
    def node_id(self) -> str:
        return str(self.identity.node_id)

    def heads_digest(self) -> str:
        return self.digest


def local_link() -> str:
    """A fresh in-process Bumble LocalLink, as an ``hci`` value."""
    from bumble.link import LocalLink

    from lichen_ble.bumble_radio import register_local_link

    name = f"test-{next(_links)}"
    register_local_link(name, LocalLink())
    return f"local:{name}"


def make_transport(hci: str, seed: int, digest: str = "00" * 8, **config: Any) -> BleTransport:
    identity = Identity(bytes([seed]) * 32)
    settings: dict[str, Any] = {"name": "ble", "hci": hci, **config}
    return BleTransport(BleConfig(**settings), Context(identity, digest))
