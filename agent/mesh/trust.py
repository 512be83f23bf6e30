"""Who may connect: the trust store (``HOME/state/trust.json``) and the trust policy.

Every channel is mutually authenticated; the handshake gives each side the
other's verified node id, and both ask :meth:`TrustPolicy.decide`. A peer is
accepted when its node id is in the trust store (``lichen trust add NODE_ID``),
when it is a current member of the node's fleet (:mod:`agent.fleet`: pending
or approved), or — for a lab, never a deployment — when ``[mesh] accept =
"any"``. A node revoked from the fleet is refused even if the trust store
names it: revocation wins.
The store is a small JSON file written atomically by the CLI; a running agent
notices changes (by modification time) without a restart.

A refusal names the peer, never a fix: a node found on the LAN, or one that
dialled in, is a stranger until its operator's id is checked, and the log
must not invite anyone to trust it. ``lichen sync ADDRESS``, where a person
named the node, adds how to trust it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

from ..errors import LichenError
from ..fleet import FleetView
from ..fsutil import atomic_write
from ..identity import NodeId
from ..link_api import PeerSighting
from ..logs import event

__all__ = ["Strangers", "TrustPolicy", "TrustStore", "Trusted"]

log = logging.getLogger("lichen.mesh")


@dataclass(frozen=True)
class Trusted:
    node: str
    label: str
    added_ms: int


class TrustStore:
    """The node ids this node trusts, with a label each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: tuple[int, int, int] | None = None
        self._trusted: dict[str, Trusted] = {}
        self._keys: frozenset[bytes] | None = None

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._trusted, self._mtime, self._keys = {}, None, None
            return
        mtime = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if mtime == self._mtime:
            return
        try:
            data: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
            trusted = {
                t["node"]: Trusted(t["node"], t.get("label", ""), t.get("added_ms", 0))
                for t in data["trusted"]
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LichenError(
                f"{self.path} is damaged ({exc}). Fix: repair or remove it, then "
                "`lichen trust add` the peers again"
            ) from None
        self._trusted, self._mtime, self._keys = trusted, mtime, None

    def reload(self) -> bool:
        """Read the file again if it changed (modification time, inode or size);
        True if the trusted set is different now."""
        before = dict(self._trusted)
        self._refresh()
        return self._trusted != before

    def all(self) -> list[Trusted]:
        self._refresh()
        return sorted(self._trusted.values(), key=lambda t: t.node)

    def node_keys(self) -> frozenset[bytes]:
        """The trusted nodes' public keys (re-read only when the file changed)."""
        self._refresh()
        if self._keys is None:
            self._keys = frozenset(NodeId.parse(node).key for node in self._trusted)
        return self._keys

    def __contains__(self, node: object) -> bool:
        self._refresh()
        return str(node) in self._trusted

    def _save(self) -> None:
        data = {
            "trusted": [t.__dict__ for t in sorted(self._trusted.values(), key=lambda t: t.node)]
        }
        atomic_write(self.path, json.dumps(data, indent=1).encode("utf-8"))
        self._mtime = None

    def add(self, node: str, label: str = "") -> Trusted:
        """Trust ``node`` (checked: a mistyped id is refused by its checksum)."""
        try:
            node_id = str(NodeId.parse(node))
        except ValueError as exc:
            raise LichenError(str(exc)) from None
        self._refresh()
        entry = Trusted(node_id, label, time.time_ns() // 1_000_000)
        self._trusted[node_id] = entry
        self._save()
        return entry

    def remove(self, node: str) -> bool:
        self._refresh()
        if self._trusted.pop(node.strip(), None) is None:
            return False
        self._save()
        return True


@dataclass(eq=False)
class TrustPolicy:
    """The trust decision hook the channel calls after the handshake."""

    store: TrustStore
    _: KW_ONLY
    accept_any: bool = False
    own: NodeId | None = None
    fleet: FleetView | None = None

    def decide(self, peer: NodeId) -> str | None:
        """None to accept ``peer``; otherwise the reason it is refused."""
        if self.own is not None and peer == self.own:
            return "it is this node itself (two agents share one identity?)"
        if self.fleet is not None and self.fleet.membership.is_revoked(peer.key):
            return self.fleet.decide(peer)
        if self.accept_any or str(peer) in self.store:
            return None
        if self.fleet is not None:
            return self.fleet.decide(peer)
        return f"{peer} ({peer.fingerprint}) is not trusted here"

    def reload(self) -> bool:
        """Read the trust store and the fleet document again if they changed;
        True if who is trusted may be different now."""
        changed = self.store.reload()
        if self.fleet is not None:
            changed = self.fleet.refresh() or changed
        return changed


class Strangers:
    """Untrusted nodes a transport saw (an mDNS record), by node id: not dialled,
    not in the peer book, only their latest sighting kept — the newest ``keep``
    — so one trusted later is dialled at once."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, PeerSighting] = OrderedDict()

    def __contains__(self, node: object) -> bool:
        return node in self._seen

    def remember(self, node: str, seen: PeerSighting) -> None:
        self._seen[node] = seen
        self._seen.move_to_end(node)
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)

    def forget(self, node: str) -> None:
        self._seen.pop(node, None)

    def admit(self, seen: PeerSighting, policy: TrustPolicy) -> bool:
        """Whether a sighting of a node (``seen.node_id`` set) may become a
        target: ``policy`` trusts its node, which is then no stranger any more.
        One it does not trust is remembered here instead (logged the first
        time), and one whose id does not parse is dropped."""
        assert seen.node_id is not None
        try:
            node = NodeId.parse(seen.node_id)
        except ValueError:
            return False
        if policy.decide(node) is None:
            self.forget(seen.node_id)
            return True
        if seen.node_id not in self._seen:
            event(log, "untrusted node seen; not dialled", logging.DEBUG,
                  node=seen.node_id, address=seen.address)  # fmt: skip
        self.remember(seen.node_id, seen)
        return False

    def trusted_now(self, policy: TrustPolicy) -> list[PeerSighting]:
        """The sightings of those ``policy`` accepts now (forgotten here)."""
        now = [s for n, s in self._seen.items() if policy.decide(NodeId.parse(n)) is None]
        for seen in now:
            assert seen.node_id is not None
            self.forget(seen.node_id)
        return now
