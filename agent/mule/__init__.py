"""The mule exchange: what a board gives a keyless phone, and takes from it (docs/field.md).

==========================  ==================================================
:mod:`.cursor`              what a phone has carried from a board, as text
:mod:`.plan`                what goes in the next bundle, by priority and budget
:mod:`.handover`            judging what a phone hands over (clouds' entries)
:mod:`.api`                 the HTTP endpoints (``/mule/v1/…``)
:mod:`.service`             the agent's service: the server and its limits
==========================  ==================================================
"""

from __future__ import annotations

from .cursor import Cursor, CursorError

__all__ = ["Cursor", "CursorError"]
