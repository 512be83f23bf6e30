"""``[mule]``: the mule exchange a board serves to keyless phones (docs/field.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..identity import NodeId
from ..schema import setting
from ..uplink.config import parse_size
from .cloud import parse_listen

__all__ = ["DEFAULT_MULE_PORT", "MuleConfig"]

DEFAULT_MULE_PORT = 8471  # the dashboard has 8470


def _check_seal_to(text: str) -> None:
    if text:
        NodeId.parse(text)


def _check_patterns(patterns: list[str]) -> None:
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern or pattern.startswith("_"):
            raise ValueError(
                f"{pattern!r} is not a collection pattern of readings or documents "
                '(e.g. "readings/weather*"; Lichen\'s own _ collections are never public)'
            )


@dataclass(frozen=True, kw_only=True)
class MuleConfig:
    """``[mule]``: off unless ``http`` (or ``lichen run --mule-http``) names an address,
    or ``ble`` serves it on the BLE transports' links."""

    http: str = setting(
        "",
        check=parse_listen,
        help=f'http = "0.0.0.0:{DEFAULT_MULE_PORT}" (the board\'s Wi-Fi address; "" = off)',
    )
    ble: bool = setting(
        False,
        help="ble = true (serve it on BLE links phones open in mule mode, docs/ble.md)",
    )
    seal_to: str = setting(
        "",
        check=_check_seal_to,
        help='seal_to = "lc1…" (the cloud bundles are sealed to; default: the first '
        "cloud of [retention] ack_from)",
    )
    public: list[str] = setting(
        default_factory=list,
        check=_check_patterns,
        help='public = ["readings/weather*"] (collections a phone may take unsealed)',
    )
    max_budget: str = setting(
        "16MB", check=parse_size, help='max_budget = "16MB" (the largest bundle one request gets)'
    )
    max_handover: str = setting(
        "1MB", check=parse_size, help='max_handover = "1MB" (the largest handover body taken)'
    )
    rate: float = setting(
        60.0,
        min=1.0,
        max=100000.0,
        help="rate = 60 (requests per minute one client may make; a burst of a quarter)",
    )
    per_client: int = setting(
        2, min=1, max=64, help="per_client = 2 (connections one client may hold open)"
    )
    timeout: float = setting(
        30.0, min=1.0, max=600.0, help="timeout = 30 (seconds a client may stall)"
    )

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.http)

    @property
    def max_budget_bytes(self) -> int:
        return parse_size(self.max_budget)

    @property
    def max_handover_bytes(self) -> int:
        return parse_size(self.max_handover)
