"""The mule's cursor: per feed, the last seq a phone has carried from one board.

A phone holds no keys and keeps no log; what it knows of a board is the
cursor the board gave it with the last bundle it received whole. It is
opaque to the phone — text it sends back as ``since`` — and means, per feed,
"every entry up to this seq was in a bundle you already have"::

    cursor = "m1." base64url(canonical CBOR [board: bstr .size 8,
                                             [[feed: bstr .size 8, seq: uint], …]])

Feeds and the board are named by the first 8 bytes of their keys (a board
holds a few feeds; a prefix two of them share is ignored, so those entries
are carried again rather than skipped). The board prefix keeps a cursor of
one board from being taken by another. A cursor names at most
:data:`MAX_FEEDS` feeds (about 25 characters each), so it fits a URL.
Plain functions: no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .. import encoding
from ..errors import EncodingError, LichenError

__all__ = ["MAX_FEEDS", "PREFIX", "Cursor", "CursorError"]

PREFIX = 8
MAX_FEEDS = 512
_TAG = "m1."


class CursorError(LichenError, ValueError):
    """A ``since`` that is not a cursor of this board."""


@dataclass(frozen=True)
class Cursor:
    """``board``: the board's key prefix; ``seqs``: feed key prefix → last seq carried."""

    board: bytes
    seqs: Mapping[bytes, int] = field(default_factory=dict)

    @classmethod
    def start(cls, board_key: bytes) -> Cursor:
        """Nothing carried yet."""
        return cls(board_key[:PREFIX])

    def after(self, feed_key: bytes) -> int:
        """The last seq of ``feed_key`` already carried (0: none)."""
        return self.seqs.get(feed_key[:PREFIX], 0)

    def advanced(self, carried: Iterable[tuple[bytes, int]]) -> Cursor:
        """This cursor with ``(feed key, seq)`` carried too (seqs only move forward;
        past :data:`MAX_FEEDS` feeds the lowest seqs are forgotten: carried again)."""
        seqs = dict(self.seqs)
        for key, seq in carried:
            prefix = key[:PREFIX]
            if seq > seqs.get(prefix, 0):
                seqs[prefix] = seq
        if len(seqs) > MAX_FEEDS:
            keep = sorted(seqs.items(), key=lambda item: item[1], reverse=True)[:MAX_FEEDS]
            seqs = dict(keep)
        return Cursor(self.board, seqs)

    def encode(self) -> str:
        value = [self.board, [[k, s] for k, s in sorted(self.seqs.items())]]
        return _TAG + base64.urlsafe_b64encode(encoding.dumps(value)).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, board_key: bytes) -> Cursor:
        """The cursor ``text`` of the board whose key is ``board_key``; "" is the start.
        :class:`CursorError` says what is wrong."""
        if not text:
            return cls.start(board_key)
        if not text.startswith(_TAG) or len(text) > 64 + MAX_FEEDS * 32:
            raise CursorError("since is not a cursor this board gave (they begin with m1.)")
        try:
            raw = base64.urlsafe_b64decode(text[len(_TAG) :] + "=" * (-len(text) % 4))
            value = encoding.loads(raw, where="cursor")
        except (ValueError, EncodingError):
            raise CursorError("since is not a cursor: it does not decode") from None
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], bytes)
            or not isinstance(value[1], list)
        ):
            raise CursorError("since is not a cursor: wrong shape")
        if value[0] != board_key[:PREFIX]:
            raise CursorError(
                "since is the cursor of another board: keep one cursor per board (by node id)"
            )
        seqs: dict[bytes, int] = {}
        for item in value[1]:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], bytes)
                or len(item[0]) != PREFIX
                or type(item[1]) is not int
                or item[1] < 0
            ):
                raise CursorError("since is not a cursor: a feed is not [prefix, seq]")
            seqs[item[0]] = item[1]
        if len(seqs) > MAX_FEEDS:
            raise CursorError(f"since names more than {MAX_FEEDS} feeds")
        return cls(value[0], seqs)
