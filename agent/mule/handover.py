"""What a phone hands over to a board: entries of the board's accepted clouds.

The body of ``POST /mule/v1/handover`` is an entry batch (``[1, [entry, …]]``,
docs/uplink.md) exactly as the cloud gave it to the phone (the ``handover``
of ``POST /v1/bundles``). :func:`screen_handover` judges it whole before
anything is stored: every entry must decode strictly, be signed by a cloud
this board accepts (``[retention] ack_from``), be of a collection a cloud
writes for its boards (:data:`agent.cloud_feed.FROM_CLOUD`: custody receipts
in ``_acks``, time beacons, commands) and verify. One entry that does not
refuses the whole handover, with the reason for each, and nothing is stored
— a phone holds no keys, so anything it carries that no accepted cloud
signed for its boards is a forgery or a mistake. What passes is stored by
the node's writer like entries from the ack topic. Plain functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from ..cloud_feed import FROM_CLOUD
from ..entry import Entry, decode_entry, verify_entry
from ..errors import EntryError
from ..identity import NodeId
from ..uplink.wire import BatchError, decode_entry_batch

__all__ = ["Refusal", "Screened", "screen_handover"]


@dataclass(frozen=True)
class Refusal:
    """Why entry ``index`` of a handover was refused (``kind``: ``malformed``,
    ``not_accepted``, ``not_for_boards``, ``forged``)."""

    index: int
    kind: str
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"entry": self.index, "kind": self.kind, "reason": self.reason}


@dataclass
class Screened:
    """The entries to store, or (if any refusal) none."""

    entries: list[Entry] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


def screen_handover(
    payload: bytes, clouds: Collection[bytes], *, max_payload: int, max_entry_size: int
) -> Screened:
    """Judge a handover body. :class:`~agent.uplink.wire.BatchError` if it is not
    an entry batch at all."""
    raws = decode_entry_batch(payload, max_payload)
    out = Screened()
    for index, raw in enumerate(raws):
        try:
            entry = decode_entry(raw, max_size=max_entry_size)
        except EntryError as exc:
            out.refusals.append(Refusal(index, "malformed", str(exc)))
            continue
        if entry.author not in clouds:
            who = NodeId(entry.author)
            out.refusals.append(
                Refusal(
                    index,
                    "not_accepted",
                    f"{entry.where}: signed by {who}, which is not a cloud this board accepts "
                    "([retention] ack_from)",
                )
            )
            continue
        if entry.collection not in FROM_CLOUD:
            out.refusals.append(
                Refusal(
                    index,
                    "not_for_boards",
                    f"{entry.where}: a cloud's {entry.collection!r} is not for boards (a "
                    f"handover carries {', '.join(FROM_CLOUD)})",
                )
            )
            continue
        try:
            verify_entry(entry)
        except EntryError as exc:
            out.refusals.append(Refusal(index, "forged", f"{entry.where}: {exc.reason}"))
            continue
        out.entries.append(entry)
    if out.refusals:
        out.entries = []
    return out


def batch_error(exc: BatchError) -> str:
    return f"the body is not an entry batch: {exc}"
