"""Streams and the pieces every transport shares.

The :class:`~agent.plugin_api.Stream` protocol is declared in
:mod:`agent.link_api`; this package holds its implementations and the
tools to test them:

=============================  ===================================================
:func:`memory_stream_pair`     two connected in-memory streams, with back-pressure
:class:`LimitedLink`           the same, shaped like a slow radio (write size,
                               rate, latency); :data:`BLE_GATT` is a phone ⇄ Pi
:class:`StreamBase`            what every stream keeps alike: its peer, its frame
                               hint, a closed stream's refusals
:class:`AsyncioStream`         a stream over asyncio's reader/writer (TCP);
                               OS errors become ``TransportError`` at the edge
:func:`tune_tcp_socket`        TCP_NODELAY, keepalive and user timeout on a socket
:class:`CountingStream`        any stream, counting the bytes that cross it
:class:`SightingFeed`          a transport's sightings, fanned out to each reader
:func:`check_transport`        the conformance suite every stream passes
=============================  ===================================================

The delays between reconnections are :class:`agent.backoff.Backoff` (re-exported
by :mod:`agent.plugin_api`). Implementations live in ``_private`` modules;
import from here::

    from agent.transport import check_transport, memory_stream_pair

    async def test_memory_streams_conform():
        await check_transport(memory_stream_pair)
"""

from ._asyncio import AsyncioStream, tune_tcp_socket
from ._base import StreamBase
from ._conformance import CHECKS, ConformanceReport, check_transport
from ._counting import CountingStream
from ._limited import BLE_GATT, LimitedLink
from ._memory import MemoryStream, memory_stream_pair
from ._sightings import SightingFeed

__all__ = [
    "BLE_GATT",
    "CHECKS",
    "AsyncioStream",
    "ConformanceReport",
    "CountingStream",
    "LimitedLink",
    "MemoryStream",
    "SightingFeed",
    "StreamBase",
    "check_transport",
    "memory_stream_pair",
    "tune_tcp_socket",
]
