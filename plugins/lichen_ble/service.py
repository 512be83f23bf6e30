"""The Lichen GATT service as data: UUIDs, the info value, the advertisement.

Everything here is pure (bytes in, values out) and is specified, with test
vectors, in ``docs/ble.md``; the vectors are ``tests/vectors/ble.json``.

* one primary service, :data:`SERVICE_UUID`, with three characteristics:
  :data:`RX_UUID` (write without response: central → peripheral segments),
  :data:`TX_UUID` (notify: peripheral → central segments) and
  :data:`INFO_UUID` (read: :class:`Info`);
* the advertisement: flags and 128-bit service data (:class:`Advert`, 10
  bytes), exactly 31 bytes — the legacy limit; the scan response carries the
  service UUID in a complete list (for phones, whose scanners filter on it).

>>> advert = Advert(node_hint=bytes(5), digest=bytes(4), room=3, dials=True)
>>> Advert.decode(advert.encode()) == advert
True
>>> len(advertising_data(advert))
31
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

__all__ = [
    "ADVERT_SIZE",
    "DIGEST_SIZE",
    "HINT_SIZE",
    "INFO_UUID",
    "LEGACY_ADV_MAX",
    "LINK_VERSION",
    "MAX_ROOM",
    "MODES_VERSION",
    "RX_UUID",
    "SCAN_RESPONSE",
    "SERVICE_UUID",
    "TX_UUID",
    "Advert",
    "AdvertError",
    "Info",
    "advertising_data",
    "digest_bytes",
    "parse_advertising_data",
]

#: the service and its characteristics (one random base, the first field counts up)
SERVICE_UUID = uuid.UUID("6c1c0001-5d2a-4a8c-9b8e-1d3c0a1e0b01")
RX_UUID = uuid.UUID("6c1c0002-5d2a-4a8c-9b8e-1d3c0a1e0b01")
TX_UUID = uuid.UUID("6c1c0003-5d2a-4a8c-9b8e-1d3c0a1e0b01")
INFO_UUID = uuid.UUID("6c1c0004-5d2a-4a8c-9b8e-1d3c0a1e0b01")

#: the link protocol version of the advertisement, the info value and a sync
#: link's OPEN (docs/ble.md); their layouts are those of version 1
LINK_VERSION = 1
#: the highest link protocol version this code speaks: version 2's OPEN carries
#: a mode (sync or mule), and nothing else changed
MODES_VERSION = 2
HINT_SIZE = 5  # the first 5 bytes of the node key: "lc1" + the id's next 8 characters
DIGEST_SIZE = 4  # the first 4 bytes of the heads digest
ADVERT_SIZE = 1 + HINT_SIZE + DIGEST_SIZE  # 10: what fits beside flags and a 128-bit UUID
MAX_ROOM = 15
LEGACY_ADV_MAX = 31  # bytes of a legacy advertising PDU's data (and of a scan response)

_AD_FLAGS = 0x01
_AD_UUID128_COMPLETE = 0x07
_AD_SERVICE_DATA_128 = 0x21
_FLAGS = bytes([2, _AD_FLAGS, 0x06])  # LE general discoverable, BR/EDR not supported


class AdvertError(ValueError):
    """Bytes that are not a Lichen advertisement or info value (with the reason)."""


def digest_bytes(digest: str, size: int = DIGEST_SIZE) -> bytes:
    """The first ``size`` bytes of a heads digest given as hex text (as
    ``TransportContext.heads_digest()`` returns it); shorter or non-hex text is
    hashed to ``size`` bytes, so any digest text maps to fixed bytes.

    >>> digest_bytes("0011223344556677").hex()
    '00112233'
    """
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raw = b""
    if len(raw) >= size:
        return raw[:size]
    import hashlib

    return hashlib.blake2b(digest.encode(), digest_size=size).digest()


@dataclass(frozen=True)
class Advert:
    """The 10 bytes of service data a Lichen node advertises.

    ``node_hint``: the first 5 bytes of its node key (unverified: the channel
    proves the key); ``digest``: the first 4 bytes of its heads digest (equal
    digests: the same heads); ``room``: how many more connections it takes
    (0–15; 0: busy); ``dials``: it also scans and dials the nodes it sees (two
    such nodes leave the dialling to the one with the smaller hint);
    ``version``: the link protocol version (0–7)."""

    node_hint: bytes
    digest: bytes
    room: int = MAX_ROOM
    dials: bool = False
    version: int = LINK_VERSION

    def __post_init__(self) -> None:
        if len(self.node_hint) != HINT_SIZE:
            raise ValueError(f"node_hint must be {HINT_SIZE} bytes, not {len(self.node_hint)}")
        if len(self.digest) != DIGEST_SIZE:
            raise ValueError(f"digest must be {DIGEST_SIZE} bytes, not {len(self.digest)}")
        if not 0 <= self.room <= MAX_ROOM:
            raise ValueError(f"room must be 0 to {MAX_ROOM}, not {self.room}")
        if not 0 <= self.version <= 7:
            raise ValueError(f"version must be 0 to 7, not {self.version}")

    def encode(self) -> bytes:
        first = self.version << 5 | (0x10 if self.dials else 0) | self.room
        return bytes([first]) + self.node_hint + self.digest

    @classmethod
    def decode(cls, data: bytes) -> Advert:
        if len(data) != ADVERT_SIZE:
            raise AdvertError(f"Lichen service data is {ADVERT_SIZE} bytes, not {len(data)}")
        first = data[0]
        return cls(
            node_hint=bytes(data[1 : 1 + HINT_SIZE]),
            digest=bytes(data[1 + HINT_SIZE :]),
            room=first & 0x0F,
            dials=bool(first & 0x10),
            version=first >> 5,
        )


def advertising_data(advert: Advert) -> bytes:
    """The advertising PDU's data: flags, then the service data under the
    128-bit service UUID — 31 bytes, the legacy limit exactly."""
    body = _AD_SERVICE_DATA_128.to_bytes(1, "little") + SERVICE_UUID.bytes[::-1] + advert.encode()
    data = _FLAGS + bytes([len(body)]) + body
    assert len(data) <= LEGACY_ADV_MAX
    return data


#: the scan response: the complete list of 128-bit service UUIDs (for phones)
SCAN_RESPONSE = bytes([17, _AD_UUID128_COMPLETE]) + SERVICE_UUID.bytes[::-1]


def parse_advertising_data(data: bytes) -> Advert | None:
    """The :class:`Advert` in advertising (or scan response) data, or None when
    it holds no Lichen service data. Malformed AD structures end the parse
    (what was read so far counts); a Lichen service data of the wrong size
    raises :class:`AdvertError`."""
    i = 0
    while i < len(data):
        length = data[i]
        if length == 0 or i + 1 + length > len(data):
            return None
        kind, value = data[i + 1], data[i + 2 : i + 1 + length]
        ours = len(value) >= 16 and uuid.UUID(bytes=bytes(value[:16][::-1])) == SERVICE_UUID
        if kind == _AD_SERVICE_DATA_128 and ours:
            return Advert.decode(bytes(value[16:]))
        i += 1 + length
    return None


@dataclass(frozen=True)
class Info:
    """The info characteristic's value: what a node says about itself, read
    before any segment flows (unverified until the channel's handshake).

    ``version``: the link protocol version; ``node``: its 32-byte node key;
    ``digest``: its 8-byte heads digest; ``room``: connections it still takes."""

    node: bytes
    digest: bytes
    room: int = MAX_ROOM
    version: int = LINK_VERSION

    SIZE = 1 + 32 + 8 + 1

    def __post_init__(self) -> None:
        if len(self.node) != 32:
            raise ValueError(f"node must be 32 bytes, not {len(self.node)}")
        if len(self.digest) != 8:
            raise ValueError(f"digest must be 8 bytes, not {len(self.digest)}")
        if not 0 <= self.room <= 255 or not 0 <= self.version <= 255:
            raise ValueError("room and version are bytes (0 to 255)")

    def encode(self) -> bytes:
        return bytes([self.version]) + self.node + self.digest + bytes([self.room])

    @classmethod
    def decode(cls, data: bytes) -> Info:
        """Parse an info value; a longer value (a later version) keeps its first
        fields, a shorter one raises :class:`AdvertError`."""
        if len(data) < cls.SIZE:
            raise AdvertError(f"a Lichen info value is at least {cls.SIZE} bytes, not {len(data)}")
        return cls(
            version=data[0], node=bytes(data[1:33]), digest=bytes(data[33:41]), room=data[41]
        )
