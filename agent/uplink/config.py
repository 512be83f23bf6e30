"""The ``[uplink]`` and ``[retention]`` tables of ``lichen.toml``.

``[uplink]`` says in which order entries go to the cloud (priorities per
collection, with a share kept for low ones) and how much may await the
cloud's acknowledgement; ``[retention]`` says how long acknowledged entries
stay, how much disk the log may take, and whose acknowledgements count.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

from ..identity import NodeId
from ..schema import setting
from .wire import ACKS_COLLECTION, DROPS_COLLECTION

__all__ = [
    "DEFAULT_PRIORITY",
    "FIRST_SEEN",
    "RetentionConfig",
    "UplinkSettings",
    "parse_duration",
    "parse_size",
    "priority_of",
]

DEFAULT_PRIORITY = 5
#: collections that always go first: alarms cannot wait behind a backlog
_ALWAYS_FIRST = {"_fleet": 9, DROPS_COLLECTION: 9, ACKS_COLLECTION: 9}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str | int) -> int:
    """``"64MB"``, ``"1.5G"``, ``"512KiB"``, ``4096`` → bytes (binary units)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f'{text!r} is not a size, e.g. "64MB", "2GB" or "0"')
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def parse_duration(text: str | int | float) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``90`` → seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text >= 0:
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f'{text!r} is not a duration, e.g. "7d", "12h", "30m" or "90s"')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def _check_priorities(table: dict[str, int]) -> None:
    for pattern, value in table.items():
        if type(value) is not int or not 0 <= value <= 9:
            raise ValueError(f"priority of {pattern!r} is {value!r}; use 0 (lowest) to 9 (alarms)")


#: ``[retention] ack_from = "first-seen"``: trust on first use, asked for by name
FIRST_SEEN = "first-seen"


def _check_ack_from(value: list[str] | str) -> None:
    if isinstance(value, str):
        return  # the Literal was checked already
    for text in value:
        NodeId.parse(text)


@dataclass(frozen=True, kw_only=True)
class UplinkSettings:
    """``[uplink]``: the order and pace of what goes to the cloud."""

    priorities: dict[str, int] = setting(
        default_factory=dict,
        check=_check_priorities,
        help='priorities = { "readings/door*" = 9, "readings/system*" = 2 } '
        "(glob → 0..9; 9 goes first)",
    )
    default_priority: int = setting(
        DEFAULT_PRIORITY, min=0, max=9, help="default_priority = 5 (collections not listed)"
    )
    low_share: float = setting(
        0.2,
        min=0.0,
        max=1.0,
        help="low_share = 0.2 (fraction of batches that start with the lowest "
        "priority waiting, so it is never starved)",
    )
    max_unacked: str = setting(
        "8MB",
        check=parse_size,
        help='max_unacked = "8MB" (sent but not yet acknowledged by the cloud)',
    )
    resend_after: float = setting(
        120.0,
        min=1.0,
        help="resend_after = 120 (seconds without an acknowledgement before resending)",
    )


@dataclass(frozen=True, kw_only=True)
class RetentionConfig:
    """``[retention]``: what stays on this node, and what goes when the disk is full."""

    keep_after_ack: str = setting(
        "7d",
        check=parse_duration,
        help='keep_after_ack = "7d" (acknowledged entries stay this long; "0" = prune at once)',
    )
    quota: str = setting(
        "0",
        check=parse_size,
        help='quota = "200MB" (entry bytes the log may hold; "0" = no quota)',
    )
    min_free: str = setting(
        "50MB",
        check=parse_size,
        help='min_free = "50MB" (free disk kept; below it the quota policy runs)',
    )
    ack_from: list[str] | Literal["first-seen"] = setting(
        default_factory=list,
        check=_check_ack_from,
        help='ack_from = ["lc1…"] (the node ids of the clouds whose acknowledgements '
        'count, as `lichen cloud` prints them; empty: none counts; "first-seen": the '
        "first cloud that acknowledges over this node's uplink)",
    )
    interval: float = setting(
        60.0, min=0.1, help="interval = 60 (seconds between retention passes)"
    )

    @property
    def keep_after_ack_s(self) -> float:
        return parse_duration(self.keep_after_ack)

    @property
    def quota_bytes(self) -> int:
        return parse_size(self.quota)

    @property
    def min_free_bytes(self) -> int:
        return parse_size(self.min_free)


def priority_of(collection: str, settings: UplinkSettings) -> int:
    """The priority of ``collection``: the first matching pattern (exact names win)."""
    if collection in _ALWAYS_FIRST:
        return _ALWAYS_FIRST[collection]
    table = settings.priorities
    if collection in table:
        return table[collection]
    for pattern, value in table.items():
        if fnmatch.fnmatchcase(collection, pattern):
            return value
    return settings.default_priority
