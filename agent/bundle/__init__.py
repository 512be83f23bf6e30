"""Bundles: files of signed entries, for carrying data by hand (docs/format.md, "Bundles").

==========================  ==================================================
:mod:`.format`              frames, header, manifest; :class:`BundleError`
:mod:`.seal`                sealing to a cloud: X25519 sealed box, secret boxes
:mod:`.writer`              the sans-IO writer: entries in, bytes out
:mod:`.reader`              the sans-IO reader: bytes in, verified entries out
:mod:`.export`              a store's entries into a bundle file, streamed
:mod:`.importer`            a bundle file into a store, verified first
==========================  ==================================================
"""

from __future__ import annotations

from .format import BundleError, FeedSpan, Header, Manifest
from .reader import BundleEnd, BundleEvent, BundleReader, BundleStart, Chunk
from .writer import BundleWriter

__all__ = [
    "BundleEnd",
    "BundleError",
    "BundleEvent",
    "BundleReader",
    "BundleStart",
    "BundleWriter",
    "Chunk",
    "FeedSpan",
    "Header",
    "Manifest",
]
