"""The fleet: nodes and the admins who run them, written down in the log.

:mod:`.document` folds the admin-signed entries of ``_fleet`` into the
membership (sans-IO), with the per-collection rules of :mod:`.rules` and
the key generations of sealed collections (:mod:`.sealing`);
:mod:`.invites` makes and checks the one-time invite codes; :mod:`.view`
is the membership a running node sees, with the trust decision and the sync
access policy derived from it; :mod:`.join` runs the join over a Noise
``XXpsk3`` channel. The model and the commands:
docs/fleet.md.
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
from .invites import Invite, InviteBook, InviteError, format_code, invite_psk, parse_code
from .rules import Rule, check_groups, check_pattern
from .sealing import Generation, Keyring, SealedError, stale
from .view import (
    FleetPolicy,
    FleetSealing,
    FleetView,
    fleet_sealing,
    read_fleet_file,
    write_fleet_file,
)

__all__ = [
    "COLLECTION",
    "ROLES",
    "FleetPolicy",
    "FleetSealing",
    "FleetView",
    "Generation",
    "Ignored",
    "Invite",
    "InviteBook",
    "InviteError",
    "Keyring",
    "Member",
    "Membership",
    "Rule",
    "SealedError",
    "check_groups",
    "check_pattern",
    "fleet_id_of",
    "fleet_sealing",
    "fold",
    "format_code",
    "format_fleet_id",
    "invite_psk",
    "op_body",
    "parse_code",
    "parse_fleet_id",
    "read_fleet_file",
    "stale",
    "write_fleet_file",
]
