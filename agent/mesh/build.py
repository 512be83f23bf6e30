"""A running node's gossip, built from its home and configuration: the trust
store and the fleet (who may connect, whose writes count), the peer book and
the transport instances, handed to :class:`~agent.mesh.gossip.Gossip`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..fleet import FleetPolicy
from ..sync import ALLOW_ALL
from .fleet_link import fleet_link
from .gossip import Gossip
from .links import transport_links
from .peerbook import PeerBook
from .trust import TrustPolicy, TrustStore

if TYPE_CHECKING:
    from ..config import Config
    from ..home import Home
    from ..node import Node
    from ..plugins import ConfiguredPlugin

__all__ = ["gossip_for"]


def gossip_for(
    home: Home,
    config: Config,
    node: Node,
    links: Sequence[ConfiguredPlugin],
    *,
    static_peers: Sequence[str] = (),
) -> Gossip:
    """The gossip runtime of a running node over its transport instances."""
    me = node.identity.node_id
    mesh = config.mesh
    fleet = fleet_link(home, node)
    view = fleet.view if fleet is not None else None
    trust = TrustPolicy(
        TrustStore(home.trust_file), accept_any=mesh.accept == "any", own=me, fleet=view
    )
    return Gossip(
        node,
        transport_links(links, node.identity.node_id, node.reader),
        config=mesh,
        trust=trust,
        peer_book=PeerBook(home.peer_book),
        role=config.node.role,
        static_peers=static_peers,
        policy=ALLOW_ALL if view is None else FleetPolicy(view),
        fleet=fleet,
    )
