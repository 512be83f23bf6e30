"""The Lichen nodes a BLE transport has heard on the air, by device address.

Sans-IO: the transport hands in each advertisement it parsed with the loop's
time; the table keeps the last one per device (at most :data:`MAX_DEVICES`
devices, the longest silent one forgotten first), notices a new contact after a
silence of :data:`~agent.plugin_api.NEW_CONTACT_S`, carries a node's key over
from another device that advertised the same hint, and answers which devices
were heard recently."""

from __future__ import annotations

from dataclasses import dataclass

from agent.plugin_api import NEW_CONTACT_S

from .service import HINT_SIZE, Advert

__all__ = ["MAX_DEVICES", "Nearby", "NearbyDevices"]

#: devices remembered at the most
MAX_DEVICES = 256


@dataclass
class Nearby:
    """A Lichen node heard on the air: its last advertisement."""

    address: str  # the device address
    advert: Advert
    rssi: int
    seen_at: float  # loop time
    node: bytes | None = None  # its node key, once known (info read, or a dial)
    reported: bytes | None = None  # the digest last reported as a sighting
    info_failed_at: float | None = None


class NearbyDevices(dict[str, Nearby]):
    """The devices heard, by address (a dict, for reading)."""

    def heard(self, address: str, advert: Advert, rssi: int, now: float) -> Nearby:
        """Record ``advert`` heard from ``address`` at ``now`` (loop time)."""
        nearby = self.get(address)
        if nearby is None:
            if len(self) >= MAX_DEVICES:
                oldest = min(self.values(), key=lambda n: n.seen_at)
                del self[oldest.address]
            nearby = self[address] = Nearby(address, advert, rssi, now)
        if now - nearby.seen_at >= NEW_CONTACT_S:
            nearby.reported = None  # heard again after a silence: a new contact
        nearby.advert, nearby.rssi, nearby.seen_at = advert, rssi, now
        if nearby.node is None or nearby.node[:HINT_SIZE] != advert.node_hint:
            nearby.node = self.known_node(advert.node_hint)
        return nearby

    def known_node(self, hint: bytes) -> bytes | None:
        """The key of a node heard advertising ``hint``, if one is known."""
        for other in self.values():
            if other.node is not None and other.node[:HINT_SIZE] == hint:
                return other.node
        return None

    def recent(self, now: float, seen_for: float) -> list[Nearby]:
        """The devices heard within ``seen_for`` seconds of ``now``."""
        return [n for n in self.values() if now - n.seen_at <= seen_for]

    def advertising(self, key: bytes, now: float, seen_for: float) -> Nearby | None:
        """The device heard last, within ``seen_for``, advertising ``key``'s hint
        (and not known to be another node)."""
        fresh = [
            n for n in self.recent(now, seen_for)
            if n.advert.node_hint == key[:HINT_SIZE] and n.node in (None, key)
        ]  # fmt: skip
        return max(fresh, key=lambda n: n.seen_at) if fresh else None
