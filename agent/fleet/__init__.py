"""The fleet: nodes and the admins who run them, written down in the log.

:mod:`.document` folds the admin-signed entries of ``_fleet`` into the
membership (sans-IO). The model: docs/fleet.md.
"""

from __future__ import annotations

from .document import (
    COLLECTION,
    ROLES,
    Ignored,
    Member,
    Membership,
    fleet_id_of,
    fold,
    format_fleet_id,
    op_body,
    parse_fleet_id,
)

__all__ = [
    "COLLECTION",
    "ROLES",
    "Ignored",
    "Member",
    "Membership",
    "fleet_id_of",
    "fold",
    "format_fleet_id",
    "op_body",
    "parse_fleet_id",
]
