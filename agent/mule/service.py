"""The mule exchange as a running service of the agent: an HTTP server on the
board's address (``[mule] http`` or ``lichen run --mule-http``).

The asyncio shell over :class:`~agent.mule.api.MuleApi`: it gives the API the
node, the accepted clouds and the acknowledgement path of the agent's
:class:`~agent.runtime.uplinks.UplinkRuntime` (so custody receipts a phone
hands over count, and prune, as those from the MQTT ack topic do), and runs
the shared :class:`~agent.http.HttpServer` with the exchange's limits: the
handover body size, connections per client, the stall timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..config import Config
from ..entry import Entry
from ..http import HttpServer
from ..identity import NodeId
from ..logs import event
from ..node import Node
from ..uplink.acks import Ack, ack_of
from .api import MuleApi, MuleRules

__all__ = ["MuleService"]

log = logging.getLogger("lichen.mule")


class MuleService:
    """Serves the mule exchange on ``address`` (``(host, port)``; port 0: any;
    None: on no socket, only on the links :attr:`server` is given to)."""

    def __init__(
        self,
        config: Config,
        node: Node,
        address: tuple[str, int] | None,
        *,
        clouds: Callable[[], frozenset[bytes]],
        cloud_order: Callable[[], Sequence[bytes]],
        apply_acks: Callable[[Sequence[Ack]], Awaitable[None]],
    ) -> None:
        mule = config.mule
        self.node, self.clouds, self.cloud_order = node, clouds, cloud_order
        self.apply_acks = apply_acks
        self.seal_key = NodeId.parse(mule.seal_to).key if mule.seal_to else None
        rules = MuleRules(
            name=config.node.name,
            public=tuple(mule.public),
            max_budget=mule.max_budget_bytes,
            max_handover=mule.max_handover_bytes,
            rate_per_minute=mule.rate,
            max_entry_size=config.log.max_entry_size,
        )
        self.api = MuleApi(node, rules, clouds=clouds, seal_to=self.seal_to, took=self._took)
        self.address = address
        self.on_ble = mule.ble  # the BLE transports' mule links are served too
        host, port = address if address is not None else ("", 0)
        self.server = HttpServer(
            self.api,
            host,
            port,
            timeout=mule.timeout,
            max_body=mule.max_handover_bytes,
            max_per_client=mule.per_client,
            server_name="lichen-board",
            serves="the mule exchange",
            address_fix="[mule] http or --mule-http HOST:PORT (port 0 picks a free one)",
        )

    def seal_to(self) -> bytes | None:
        """``[mule] seal_to``, else the first accepted cloud (None: none known)."""
        if self.seal_key is not None:
            return self.seal_key
        order = list(self.cloud_order())
        return order[0] if order else None

    async def _took(self, entries: list[Entry]) -> None:
        acks = [a for a in map(ack_of, entries) if a is not None]
        await self.apply_acks(acks)
        if entries:
            event(log, "handover stored", entries=len(entries), acks=len(acks))

    async def start(self) -> None:
        if self.address is not None:
            await self.server.start()  # a ServeError names the address, the reason and the fix
        seal = self.seal_to()
        event(
            log,
            "mule exchange serving",
            address=self.server.address if self.address is not None else None,
            sealed_to=None if seal is None else str(NodeId(seal)),
            public=",".join(self.api.rules.public) or None,
        )
        if seal is None:
            event(
                log,
                "no cloud to seal bundles to: phones get only public collections",
                logging.WARNING,
                fix='[retention] ack_from = ["lc1…"] names the cloud',
            )

    async def close(self) -> None:
        await self.server.close()

    def status(self) -> dict[str, Any]:
        seal = self.seal_to()
        return {
            "address": self.server.address if self.address is not None else None,
            "ble": self.on_ble,
            "sealed_to": None if seal is None else str(NodeId(seal)),
            **self.api.stats,
            "http": self.server.counters(),
        }
