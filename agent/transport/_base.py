"""What every :class:`~agent.link_api.Stream` keeps the same way.

A stream names its peer, tells protocols how to size their frames, and, once
closed, refuses sends and receives with a :class:`~agent.errors.TransportError`
that names the peer. :class:`StreamBase` holds those parts; an implementation
calls :meth:`StreamBase._check_send` / :meth:`StreamBase._check_receive` first
in its ``send`` / ``receive`` and sets ``_closed`` in its ``close``.
"""

from __future__ import annotations

from ..errors import TransportError

__all__ = ["StreamBase"]


class StreamBase:
    """The peer, the frame hint and the closed stream's refusals of a stream."""

    def __init__(self, *, peer: str, max_frame_hint: int) -> None:
        self._peer = peer
        self._max_frame_hint = max_frame_hint
        self._closed = False

    @property
    def max_frame_hint(self) -> int:
        return self._max_frame_hint

    @property
    def peer(self) -> str:
        return self._peer

    def _check_send(self) -> None:
        if self._closed:
            raise TransportError(f"send on a closed stream to {self._peer}")

    def _check_receive(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        if self._closed:
            raise TransportError(f"receive on a closed stream from {self._peer}")
