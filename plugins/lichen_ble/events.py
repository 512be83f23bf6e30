"""What the link core says, and the two facts it is built around: roles, value sizes.

:class:`~lichen_ble.link.GattLink` hands out these events from ``next_event``
(with :data:`agent.sansio.NEED_DATA` when there is nothing yet); they are
re-exported by :mod:`lichen_ble.link`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .segments import MIN_VALUE

__all__ = [
    "MAX_VALUE",
    "DataReceived",
    "EndOfStream",
    "LinkClosed",
    "LinkEvent",
    "LinkOpened",
    "Role",
    "value_size",
]

MAX_VALUE = 512  # GATT's largest attribute value: the largest write without response that arrives


def value_size(att_mtu: int) -> int:
    """The largest GATT value to use on a link with ``att_mtu``: ``min(mtu − 3, 512)``
    (a longer write without response is dropped silently, a longer notification cut)."""
    return max(MIN_VALUE, min(att_mtu - 3, MAX_VALUE))


class Role(enum.Enum):
    CENTRAL = "central"  # GATT client: writes rx, is notified on tx; opens the link
    PERIPHERAL = "peripheral"  # GATT server: notifies tx, is written on rx; answers


@dataclass(frozen=True)
class LinkOpened:
    """Both sides exchanged OPEN; ``max_value`` is the value size this side sends."""

    max_value: int


@dataclass(frozen=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True)
class EndOfStream:
    """The peer half-closed (FIN): everything it sent has been handed out."""


@dataclass(frozen=True)
class LinkClosed:
    """The link is over. ``clean``: the peer had finished (FIN) and closed in order."""

    reason: str
    clean: bool = False


LinkEvent = LinkOpened | DataReceived | EndOfStream | LinkClosed
