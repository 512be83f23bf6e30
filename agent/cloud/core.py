"""The sans-IO ingestion core: bytes in, verdicts and acknowledgements out.

No MQTT, no database, no clock inside. :class:`IngestCore` judges one
message — topic and payload — and says which entries may be stored and why
the others may not; :meth:`IngestCore.plan_acks` turns per-feed contiguity
into the acknowledgement drafts the cloud must sign; :class:`AckCoalescer`
decides when each board's acknowledgement is published.

What is judged here (the sinks add the chain and fork rules)::

    batch     the topic is <prefix>/<fleet>/<node>/up, <node> a node id; the
              payload is a batch (wire.decode_entry_batch: CBOR, shape, ≤ 128 KiB)
    entry     strict decode (canonical CBOR, size cap), an admitted author
              (accept = "trusted": a trusted board or a fleet member), Ed25519
              signature; an entry of another author than <node> only if <node>
              is admitted too (a trusted board or a current member relaying
              what it carries); with a fleet (:mod:`.fleet`), its access
              policy: pending and revoked members, collection rules
    _drops    an entry of collection _drops names holes: only the ranges its
              author declares for its *own* feed count (others are ignored)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Protocol

from ..entry import DEFAULT_MAX_ENTRY_SIZE, Entry, decode_entry, verify_entry
from ..errors import BadSignature, EntryError, OversizedEntry
from ..identity import NodeId
from ..store.log_store import Draft
from ..uplink.wire import (
    ACKS_COLLECTION,
    DEFAULT_PREFIX,
    DROPS_COLLECTION,
    MAX_PAYLOAD,
    BatchError,
    Topics,
    ack_body,
    decode_entry_batch,
    encode_entry_batch,
    parse_drop_body,
    parse_up_topic,
)

__all__ = [
    "Accepted",
    "AckCoalescer",
    "AckPublication",
    "Fleet",
    "IngestCore",
    "Judgement",
    "Rejection",
    "acked_feed",
]

#: rejection kinds, as counted in status and named in logs
KINDS = ("topic", "batch", "malformed", "oversized", "signature", "untrusted", "uploader",
         "pending", "revoked", "rule", "quota", "fork", "chain")  # fmt: skip
#: what to do about a kind of rejection, in its log line
FIXES = {
    "untrusted": "on the cloud, lichen trust add NODE_ID (if it is one of your boards)",
    "uploader": "on the cloud, lichen trust add NODE_ID of the uploading board, or let the "
    "author upload its own entries",
    "quota": "raise [cloud] board_quota (what is stored stays)",
    "pending": "on an admin's node, lichen fleet approve NODE_ID (after comparing the 6 digits)",
    "rule": "on an admin's node, lichen fleet group NODE_ID --groups … or lichen fleet rule "
    "(if it should write this collection)",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why (part of) a message was refused. ``index`` is the entry's position in
    the batch (None: the whole message); ``where`` names the entry if it decoded."""

    topic: str
    kind: str
    reason: str
    index: int | None = None
    where: str | None = None

    def fields(self) -> dict[str, object]:
        """For :func:`agent.logs.event`."""
        out: dict[str, object] = {"topic": self.topic, "kind": self.kind}
        if self.index is not None:
            out["entry"] = self.index
        if self.where is not None:
            out["where"] = self.where
        out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Accepted:
    """A decoded, verified entry ready for the sink, with the holes it declares
    in its author's own feed (only for ``_drops`` entries)."""

    index: int
    entry: Entry
    holes: tuple[tuple[int, int], ...] = ()
    hole_reason: str = ""


@dataclass(slots=True)
class Judgement:
    """The verdict on one message."""

    topic: str
    uploader: Topics | None
    size: int
    uploader_key: bytes | None = None
    accepted: list[Accepted] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ack_topic(self) -> str | None:
        return None if self.uploader is None else self.uploader.ack


class Fleet(Protocol):
    """What the core asks of the cloud's fleet (:class:`agent.cloud.fleet.CloudFleet`)."""

    def admits_entry(self, entry: Entry) -> bool: ...

    def may_upload(self, uploader: bytes, entry: Entry) -> bool: ...

    def refusal(self, entry: Entry) -> tuple[str, str] | None: ...

    def judge_document_first(
        self,
        verdict: Judgement,
        decoded: Sequence[tuple[int, bytes, Entry]],
        judge: Callable[[Judgement, int, bytes, Entry], None],
    ) -> None: ...


def _kind(error: EntryError) -> str:
    if isinstance(error, BadSignature):
        return "signature"
    if isinstance(error, OversizedEntry):
        return "oversized"
    return "malformed"


class IngestCore:
    """Judges messages from the up topics. Stateless apart from its settings."""

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        trusted: Collection[bytes] | None = None,
        max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE,
        max_payload: int = MAX_PAYLOAD,
        fleet: Fleet | None = None,
    ) -> None:
        """``trusted``: None accepts any author whose signature verifies
        (``accept = "any"``); else only these public keys (the role sets
        :attr:`trusted` again when its trust list changes). ``fleet``: the
        cloud's fleet, whose members are admitted too and whose access policy
        applies (None: no fleet)."""
        self.prefix = prefix
        self.trusted = None if trusted is None else frozenset(trusted)
        self.fleet = fleet
        self.max_entry_size = max_entry_size
        self.max_payload = max_payload

    def judge(self, topic: str, payload: bytes, *, checked: bool = False) -> Judgement:
        """Decode and verify every entry of one message; never raises for bad input.
        ``checked``: every entry of this payload was strictly decoded and its
        signature verified already (in a worker process): the rest is judged."""
        try:
            uploader = parse_up_topic(topic, self.prefix)
        except BatchError as exc:
            verdict = Judgement(topic, None, len(payload))
            verdict.rejections.append(Rejection(topic, "topic", str(exc)))
            return verdict
        verdict = Judgement(topic, uploader, len(payload))
        try:
            verdict.uploader_key = uploader_key = NodeId.parse(uploader.node).key
        except ValueError as exc:
            verdict.rejections.append(
                Rejection(topic, "topic", f"the node level is not a node id: {exc}")
            )
            return verdict
        try:
            raws = decode_entry_batch(payload, self.max_payload)
        except BatchError as exc:
            verdict.rejections.append(Rejection(topic, "batch", str(exc)))
            return verdict
        self._judge_all(verdict, raws, uploader_key, not checked, not checked)
        return verdict

    def judge_entries(
        self, source: str, raws: Sequence[bytes], *, signatures_verified: bool = False
    ) -> Judgement:
        """Judge entries that came another way than an up topic (a bundle, carried
        by hand): each exactly as an upload's, but no one uploaded them, so only
        their authors are judged. ``source`` names them in rejections.
        ``signatures_verified``: these exact bytes had their signatures verified
        already (a bundle's second pass, each chunk matched to its digest from the
        first): everything else is judged, the Ed25519 checks are not repeated."""
        verdict = Judgement(source, None, sum(len(raw) for raw in raws))
        self._judge_all(verdict, raws, None, not signatures_verified, True)
        return verdict

    def _judge_all(
        self,
        verdict: Judgement,
        raws: Sequence[bytes],
        uploader: bytes | None,
        verify: bool,
        strict: bool,
    ) -> None:
        fleet, size = self.fleet, self.max_entry_size
        judge = functools.partial(self._judge_entry, uploader=uploader, verify=verify)
        decoded: list[tuple[int, bytes, Entry]] = []
        for index, raw in enumerate(raws):
            try:
                entry = decode_entry(raw, max_size=size, strict=strict)
            except EntryError as exc:
                verdict.rejections.append(
                    Rejection(verdict.topic, _kind(exc), exc.reason, index, exc.where)
                )
            else:
                if fleet is None:  # judged as decoded, in order
                    judge(verdict, index, raw, entry)
                else:
                    decoded.append((index, raw, entry))
        if fleet is not None:
            fleet.judge_document_first(verdict, decoded, judge)

    def _judge_entry(
        self, verdict: Judgement, index: int, _raw: bytes, entry: Entry, *,
        uploader: bytes | None, verify: bool = True,
    ) -> None:  # fmt: skip
        topic = verdict.topic
        trusted, fleet = self.trusted, self.fleet
        if (
            trusted is not None
            and entry.author not in trusted
            and (fleet is None or not fleet.admits_entry(entry))
        ):
            member = " nor a member of the fleet" if fleet is not None else ""
            reason = f"author {NodeId(entry.author)} is not a trusted board{member}"
            verdict.rejections.append(Rejection(topic, "untrusted", reason, index, entry.where))
            return
        if (
            uploader is not None
            and entry.author != uploader
            and trusted is not None
            and (uploader not in trusted)
            and (fleet is None or not fleet.may_upload(uploader, entry))
        ):
            reason = (
                f"an entry of {NodeId(entry.author)} on the topic of {NodeId(uploader)}, "
                "which is not a trusted board: only a trusted board or a member of the fleet "
                "uploads for others"
            )
            verdict.rejections.append(Rejection(topic, "uploader", reason, index, entry.where))
            return
        try:
            if verify:
                verify_entry(entry)
        except EntryError as exc:
            verdict.rejections.append(Rejection(topic, _kind(exc), exc.reason, index, entry.where))
            return
        refusal = None if fleet is None else fleet.refusal(entry)
        if refusal is not None:
            verdict.rejections.append(Rejection(topic, *refusal, index, entry.where))
            return
        holes: tuple[tuple[int, int], ...] = ()
        reason = ""
        if entry.collection == DROPS_COLLECTION:
            try:
                record = parse_drop_body(entry.body)
            except BatchError as exc:
                verdict.notes.append(f"{entry.where}: drop record ignored: {exc}")
            else:
                own = str(NodeId(entry.author))
                holes = tuple(record.feeds.get(own, ()))
                reason = record.reason
                others = sorted(node for node in record.feeds if node != own)
                if others:
                    verdict.notes.append(
                        f"{entry.where}: drop ranges for other feeds ignored "
                        f"({len(others)} feeds): only an author's own drops count"
                    )
        verdict.accepted.append(Accepted(index, entry, holes, reason))

    @staticmethod
    def plan_acks(
        contiguous: Mapping[bytes, int],
        acked: Mapping[bytes, int],
        clouds: Collection[bytes] = (),
    ) -> list[Draft]:
        """The acknowledgements to sign: one per feed whose contiguous seq passed
        what was acknowledged. Feeds of ``clouds`` (this node, fellow workers)
        are never acknowledged: their acks would feed back forever."""
        return [
            Draft(ACKS_COLLECTION, ack_body(seq), str(NodeId(author)))
            for author, seq in sorted(contiguous.items())
            if seq > acked.get(author, 0) and author not in clouds
        ]


def acked_feed(entry: Entry) -> tuple[bytes, int] | None:
    """``(feed, seq)`` an ``_acks`` entry acknowledges, or None if it is not one."""
    if entry.collection != ACKS_COLLECTION or entry.doc_id is None:
        return None
    body = entry.body
    if not isinstance(body, dict) or type(body.get("seq")) is not int:
        return None
    try:
        return NodeId.parse(entry.doc_id).key, int(body["seq"])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AckPublication:
    """One acknowledgement message: per feed, the acknowledged seq and the
    ``_acks`` entry's bytes; published QoS 1, retained, on ``topic``. ``extra``:
    other entries of the cloud's feed for the board (a fresh time beacon)."""

    topic: str
    acks: Mapping[bytes, tuple[int, bytes]]
    extra: tuple[bytes, ...] = ()

    @property
    def payload(self) -> bytes:
        acks = (raw for _, (_, raw) in sorted(self.acks.items()))
        return encode_entry_batch(chain(acks, self.extra))


class AckCoalescer:
    """At most one acknowledgement publication per board per ``interval``
    seconds, and never losing the last one.

    :meth:`offer` merges the current acknowledgements (per feed: seq and the
    ack entry's bytes, the highest seq wins) into the board's pending set;
    :meth:`due` hands out the payloads whose board may be published to now.
    Time is passed in (``now``, seconds, monotonic)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: dict[str, dict[bytes, tuple[int, bytes]]] = {}
        self._last_sent: dict[str, float] = {}

    def offer(self, topic: str, acks: Mapping[bytes, tuple[int, bytes]]) -> None:
        if not acks:
            return
        pending = self._pending.setdefault(topic, {})
        for feed, (seq, raw) in acks.items():
            held = pending.get(feed)
            if held is None or seq >= held[0]:
                pending[feed] = (seq, raw)

    def due(self, now: float, *, force: bool = False) -> list[AckPublication]:
        """The publications to make now (``force``: every pending one, at shutdown)."""
        out = []
        for topic in list(self._pending):
            last = self._last_sent.get(topic)
            if force or last is None or now - last >= self.interval:
                acks = self._pending.pop(topic)
                self._last_sent[topic] = now
                out.append(AckPublication(topic, acks))
        if len(self._last_sent) > 4 * len(self._pending) + 1024:  # forget idle boards
            horizon = now - self.interval
            self._last_sent = {t: s for t, s in self._last_sent.items() if s > horizon}
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` will next return something (None: nothing pending)."""
        if not self._pending:
            return None
        return min(self._last_sent.get(t, float("-inf")) + self.interval for t in self._pending)

    @property
    def pending(self) -> int:
        return len(self._pending)


def merge_current(
    feeds: Iterable[bytes], current: Mapping[bytes, tuple[int, bytes]]
) -> dict[bytes, tuple[int, bytes]]:
    """The current acknowledgements of ``feeds`` (those that have one)."""
    return {f: current[f] for f in feeds if f in current}
