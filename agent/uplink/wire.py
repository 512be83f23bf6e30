"""What travels between a board and the cloud: topics, batches, acknowledgements.

Everything here is plain data and pure functions, shared by the MQTT uplink
plugin (the board side) and the cloud ingestion role, so the two cannot drift.
``docs/uplink.md`` is the specification; this module is its executable form.

Topics (``prefix`` defaults to ``lichen/v1``)::

    <prefix>/<fleet>/<node>/up      a batch of signed entries, QoS 1, from the board
    <prefix>/<fleet>/<node>/ack     the cloud's signed acknowledgements, QoS 1, retained
    <prefix>/<fleet>/<node>/status  "online" / "offline" (retained; the last will)

A **batch** is the deterministic CBOR array ``[1, [entry, entry, …]]``: the
format version, then every entry's exact signed bytes as a byte string. The
same format carries acknowledgements back on the ack topic.

An **acknowledgement** is an entry of the cloud's own feed in collection
``_acks``, document id = the acknowledged feed's node id, body
``{"seq": N}``: the cloud holds every entry ``1..N`` of that feed (or was told
by the feed's author that the missing ones were dropped). Being an ordinary
signed entry, it reaches a board by MQTT or by any gossip path.

A **drop record** is an entry in collection ``_drops`` of the dropping node's
feed: ``{"reason", "feeds": {node id: [[first, last], …]}, "entries",
"bytes", "collections": {name: entries}}``. The cloud counts a feed's holes
towards that feed's acknowledgement only when the feed's own author dropped
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, overload

from .. import encoding
from ..cloud_feed import ACKS_COLLECTION
from ..errors import EncodingError, LichenError
from .broker import BROKER_PORTS, BrokerAddress, parse_broker, split_host_port

__all__ = [
    "ACKS_COLLECTION",
    "BATCH_ENVELOPE",
    "BATCH_VERSION",
    "BROKER_PORTS",
    "BYTES_HEADS",
    "DEFAULT_PREFIX",
    "DROPS_COLLECTION",
    "MAX_PAYLOAD",
    "NEVER_DROPPED",
    "Batch",
    "BatchError",
    "BrokerAddress",
    "DropRecord",
    "Topics",
    "ack_body",
    "batch_payload",
    "batch_size",
    "check_client_id",
    "check_topic_level",
    "check_topic_prefix",
    "decode_entry_batch",
    "drop_body",
    "encode_entry_batch",
    "entry_cost",
    "parse_ack_body",
    "parse_broker",
    "parse_drop_body",
    "parse_up_topic",
    "split_batches",
    "split_host_port",
]

BATCH_VERSION = 1
DEFAULT_PREFIX = "lichen/v1"
#: the largest payload a batch may have: AWS IoT Core's message size limit
MAX_PAYLOAD = 128 * 1024
DROPS_COLLECTION = "_drops"
#: collections the quota never drops (membership, acknowledgements, drop records)
NEVER_DROPPED = ("_fleet", ACKS_COLLECTION, DROPS_COLLECTION)
_FORBIDDEN_IN_LEVEL = frozenset("/+#\0")


class BatchError(LichenError, ValueError):
    """A batch (or a topic) that does not follow ``docs/uplink.md``."""


def _check_level(what: str, value: str) -> str:
    if not value or _FORBIDDEN_IN_LEVEL & set(value):
        raise BatchError(f"{what} {value!r} must be a non-empty MQTT topic level without / + #")
    return value


@dataclass(frozen=True)
class Topics:
    """The topics of one node in one fleet."""

    fleet: str
    node: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _check_level("fleet", self.fleet)
        _check_level("node", self.node)
        if not self.prefix or set("+#\0") & set(self.prefix) or self.prefix.endswith("/"):
            raise BatchError(
                f"topic prefix {self.prefix!r} must not be empty, end in /, or hold + #"
            )

    @property
    def up(self) -> str:
        return f"{self.prefix}/{self.fleet}/{self.node}/up"

    @property
    def ack(self) -> str:
        return f"{self.prefix}/{self.fleet}/{self.node}/ack"

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.fleet}/{self.node}/status"

    @staticmethod
    def up_filter(prefix: str = DEFAULT_PREFIX, share_group: str | None = None) -> str:
        """The cloud's subscription: every node of every fleet, optionally shared."""
        topic = f"{prefix}/+/+/up"
        if share_group is None:
            return topic
        return f"$share/{_check_level('share group', share_group)}/{topic}"


def check_topic_level(value: str) -> None:
    """ValueError unless ``value`` is one topic level (a fleet, a share group)."""
    try:
        _check_level("topic level", value)
    except BatchError:
        raise ValueError("must be one MQTT topic level: no / + # and not empty") from None


def check_topic_prefix(value: str) -> None:
    """ValueError unless ``value`` can prefix topics (``lichen/v1``, ``homeassistant``)."""
    try:
        Topics("fleet", "node", value)
    except BatchError:
        raise ValueError("must not be empty, end in /, or hold + #") from None


def check_client_id(value: str) -> None:
    """ValueError for an MQTT client id many brokers refuse."""
    if len(value.encode("utf-8")) > 128:
        raise ValueError("is longer than 128 bytes, more than many brokers accept")


def parse_up_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> Topics:
    """``<prefix>/<fleet>/<node>/up`` → its :class:`Topics`; raise :class:`BatchError`."""
    head = prefix + "/"
    if not topic.startswith(head) or not topic.endswith("/up"):
        raise BatchError(f"topic {topic!r} is not {prefix}/<fleet>/<node>/up")
    parts = topic[len(head) : -len("/up")].split("/")
    if len(parts) != 2:
        raise BatchError(f"topic {topic!r} is not {prefix}/<fleet>/<node>/up")
    return Topics(parts[0], parts[1], prefix)


class Batch(Sequence[bytes]):
    """A batch the outbox made: its payload, made once, and how many entries it
    carries. The entries themselves are read back from the payload only when
    asked for (a publisher needs the payload and the count, no object per entry)."""

    __slots__ = ("_count", "_entries", "payload")

    def __init__(self, payload: bytes, count: int) -> None:
        self.payload, self._count = payload, count
        self._entries: list[bytes] | None = None

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if self._entries is None:
            self._entries = decode_entry_batch(self.payload, len(self.payload))
        return self._entries[index]


def _head(major: int, n: int) -> bytes:
    """A canonical CBOR head: ``major`` (``0x40`` bytes, ``0x80`` array), length ``n``."""
    if 0 <= n < 24:
        return bytes((major | n,))
    for limit, info, size in ((256, 24, 1), (65536, 25, 2), (1 << 32, 26, 4)):
        if 0 <= n < limit:
            return bytes((major | info,)) + n.to_bytes(size, "big")
    raise BatchError(f"a length of {n} cannot be carried")


class _Heads(dict[int, bytes]):
    """``BYTES_HEADS[n]``: the CBOR head of an ``n``-byte string (made once; ≤ 4096 kept)."""

    def __missing__(self, length: int) -> bytes:
        head = _head(0x40, length)
        if len(self) < 4096:
            self[length] = head
        return head


BYTES_HEADS: dict[int, bytes] = _Heads()


def batch_payload(count: int, pieces: Iterable[bytes]) -> bytes:
    """The payload of ``count`` entries given as ``pieces``: ``head, raw, head, raw, …``."""
    return b"".join(chain((bytes((0x82, BATCH_VERSION)), _head(0x80, count)), pieces))


def encode_entry_batch(entries: Iterable[bytes | bytearray | memoryview]) -> bytes:
    """The payload carrying ``entries``: the canonical CBOR of ``[1, [entry, …]]``."""
    if type(entries) is Batch:
        return entries.payload
    raws = [bytes(e) for e in entries]
    heads = map(BYTES_HEADS.__getitem__, map(len, raws))
    return batch_payload(len(raws), chain.from_iterable(zip(heads, raws, strict=True)))


def decode_entry_batch(payload: bytes, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """The raw entries of a batch payload; raise :class:`BatchError` naming the fault.

    Only the envelope is checked here: every entry is then decoded and verified
    on its own by whoever stores it."""
    if len(payload) > max_payload:
        raise BatchError(f"batch is {len(payload)} bytes; the limit is {max_payload}")
    try:
        value = encoding.loads(payload)
    except (EncodingError, ValueError) as exc:
        raise BatchError(f"batch is not valid CBOR: {exc}") from None
    if not isinstance(value, list) or len(value) != 2:
        raise BatchError("batch must be the array [version, [entries]]")
    version, entries = value
    if version != BATCH_VERSION:
        raise BatchError(f"batch version {version!r} is not supported (expected {BATCH_VERSION})")
    if not isinstance(entries, list) or not all(isinstance(e, bytes) for e in entries):
        raise BatchError("batch entries must be an array of byte strings")
    return entries


#: CBOR bytes of a batch's envelope, ``[1, [``, at most (an array head of up to 9 bytes)
BATCH_ENVELOPE = 1 + 1 + 9


def entry_cost(length: int) -> int:
    """Bytes an entry of ``length`` bytes adds to a batch (its byte-string head included)."""
    return length + len(BYTES_HEADS[length])


def split_batches(entries: Iterable[bytes], max_payload: int = MAX_PAYLOAD) -> list[list[bytes]]:
    """Group ``entries`` into batches whose payload stays within ``max_payload``."""
    batches: list[list[bytes]] = []
    current: list[bytes] = []
    size = BATCH_ENVELOPE
    for raw in entries:
        cost = entry_cost(len(raw))
        if cost + BATCH_ENVELOPE > max_payload:
            raise BatchError(f"an entry of {len(raw)} bytes cannot fit a {max_payload}-byte batch")
        if current and size + cost > max_payload:
            batches.append(current)
            current, size = [], BATCH_ENVELOPE
        current.append(raw)
        size += cost
    if current:
        batches.append(current)
    return batches


def batch_size(entries: Sequence[bytes]) -> int:
    """An upper bound of :func:`encode_entry_batch`'s length for ``entries``."""
    return BATCH_ENVELOPE + sum(entry_cost(len(e)) for e in entries)


# ----------------------------------------------------------- acknowledgements


def ack_body(seq: int) -> dict[str, Any]:
    """The body of an acknowledgement: everything ``1..seq`` is held."""
    if type(seq) is not int or seq < 0:
        raise ValueError(f"acknowledged seq {seq!r} must be an integer ≥ 0")
    return {"seq": seq}


def parse_ack_body(body: object) -> int:
    """The acknowledged seq of an ``_acks`` body; raise :class:`BatchError`."""
    if not isinstance(body, Mapping) or type(body.get("seq")) is not int or body["seq"] < 0:
        raise BatchError(f"acknowledgement body {body!r} must be {{'seq': integer ≥ 0}}")
    return int(body["seq"])


@dataclass(frozen=True)
class DropRecord:
    """What a node dropped to stay within its disk quota."""

    reason: str
    feeds: dict[str, list[tuple[int, int]]]
    entries: int
    bytes: int
    collections: dict[str, int]


def drop_body(record: DropRecord) -> dict[str, Any]:
    return {
        "reason": record.reason,
        "feeds": {node: [[a, b] for a, b in ranges] for node, ranges in record.feeds.items()},
        "entries": record.entries,
        "bytes": record.bytes,
        "collections": dict(record.collections),
    }


def parse_drop_body(body: object) -> DropRecord:
    """A ``_drops`` body back; raise :class:`BatchError` naming what is malformed."""
    if not isinstance(body, Mapping):
        raise BatchError("drop record body must be a map")
    feeds = body.get("feeds")
    if not isinstance(feeds, Mapping):
        raise BatchError("drop record 'feeds' must map node ids to seq ranges")
    parsed: dict[str, list[tuple[int, int]]] = {}
    for node, ranges in feeds.items():
        if not isinstance(node, str) or not isinstance(ranges, list):
            raise BatchError(f"drop record ranges of {node!r} must be a list")
        out = []
        for pair in ranges:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(type(x) is int for x in pair)
                or not 1 <= pair[0] <= pair[1]
            ):
                raise BatchError(f"drop record range {pair!r} of {node} must be [first, last]")
            out.append((pair[0], pair[1]))
        parsed[node] = out
    collections = body.get("collections", {})
    if not isinstance(collections, Mapping):
        raise BatchError("drop record 'collections' must be a map")
    return DropRecord(
        reason=str(body.get("reason", "")),
        feeds=parsed,
        entries=int(body.get("entries", 0)),
        bytes=int(body.get("bytes", 0)),
        collections={str(k): int(v) for k, v in collections.items()},
    )
