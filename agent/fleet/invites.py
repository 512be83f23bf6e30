"""Invites: a short code that lets one new node join, once, before it expires.

An invite is 10 random bytes (the *secret*). Its code, the text a person
types or scans, is the secret and a 2-byte BLAKE2b checksum in RFC 4648
base32 — 20 characters, shown in groups of five (``ABCDE-FGHIJ-KLMNO-PQRST``);
a mistyped code is refused by its checksum before anything is dialled. Both
sides derive the channel's pre-shared key from the secret (``psk =
BLAKE2b-256(secret, person="lichen-invite")``), so the join runs Noise
``XXpsk3``: only a holder of the code completes the handshake, and the
handshake hash — hence the 6-digit code both screens show — depends on it.

The inviting node keeps its invites in ``HOME/state/invites.json`` (mode 0600:
it holds the secrets), written by ``lichen fleet invite`` and by the running
agent that serves the join; every change is a locked read-modify-write, so
the two never lose each other's updates. An invite is *open* until it is used
(single use) or expires; used and expired ones are kept for a day so that a
replay is refused with its reason rather than as a mere wrong code.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import LichenError
from ..fsutil import atomic_write

__all__ = ["Invite", "InviteBook", "InviteError", "format_code", "invite_psk", "parse_code"]

SECRET_LEN = 10
KEEP_MS = 24 * 3600 * 1000  # used or expired invites kept this long (replays get a reason)
MAX_OPEN = 16  # open invites at once (each costs a handshake attempt per join)


class InviteError(LichenError, ValueError):
    """An invite code that is malformed, used, expired or unknown."""


def _checksum(secret: bytes) -> bytes:
    return hashlib.blake2b(secret, digest_size=2, person=b"lichen-inv-code").digest()


def format_code(secret: bytes) -> str:
    text = base64.b32encode(secret + _checksum(secret)).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 5] for i in range(0, len(text), 5))


def parse_code(code: str) -> bytes:
    """The secret of ``code`` (dashes, spaces and case ignored); :class:`InviteError`
    if it is not an invite code or is mistyped."""
    text = "".join(ch for ch in code.upper() if ch not in "- \t")
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise InviteError(
            f"invite code {code!r} is not base32 (letters A-Z and digits 2-7)"
        ) from None
    if len(raw) != SECRET_LEN + 2:
        raise InviteError(f"invite code {code!r} has {len(text)} characters; a code has 20")
    secret, check = raw[:SECRET_LEN], raw[SECRET_LEN:]
    if _checksum(secret) != check or format_code(secret).replace("-", "") != text:
        raise InviteError(f"invite code {code!r} is mistyped (its checksum does not match)")
    return secret


def invite_psk(secret: bytes) -> bytes:
    """The 32-byte Noise pre-shared key of an invite."""
    return hashlib.blake2b(secret, digest_size=32, person=b"lichen-invite").digest()


def invite_id(secret: bytes) -> str:
    """A short public name of the invite (logs, the member-added entry)."""
    return hashlib.blake2b(secret, digest_size=6, person=b"lichen-invite-id").hexdigest()


@dataclass(frozen=True)
class Invite:
    id: str
    secret: str  # hex
    role: str
    groups: list[str]
    created_ms: int
    expires_ms: int
    used_by: str | None = None
    used_ms: int | None = None
    sas: str | None = None

    @property
    def psk(self) -> bytes:
        return invite_psk(bytes.fromhex(self.secret))

    @property
    def code(self) -> str:
        return format_code(bytes.fromhex(self.secret))

    def refusal(self, now_ms: int) -> str | None:
        """Why this invite cannot be used now (None: it can)."""
        if self.used_by is not None:
            return f"invite {self.id} was already used by {self.used_by}"
        if now_ms >= self.expires_ms:
            return f"invite {self.id} expired {(now_ms - self.expires_ms) // 1000} s ago"
        return None


class InviteBook:
    """The invites of one node, in ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> list[Invite]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
            return [Invite(**item) for item in data["invites"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LichenError(
                f"{self.path} is damaged ({exc}). Fix: remove it and invite again"
            ) from None

    def _write(self, invites: list[Invite]) -> None:
        data = {"invites": [asdict(i) for i in invites]}
        atomic_write(self.path, json.dumps(data, indent=1).encode("utf-8"), mode=0o600)

    def all(self) -> list[Invite]:
        return self._read()

    def create(
        self, role: str, groups: list[str], ttl_s: float, now_ms: int | None = None
    ) -> Invite:
        """A new open invite (at most :data:`MAX_OPEN` open at once)."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        secret = os.urandom(SECRET_LEN)
        invite = Invite(
            invite_id(secret), secret.hex(), role, groups, now_ms, now_ms + int(ttl_s * 1000)
        )
        with self._locked():
            invites = [
                i for i in self._read() if now_ms - max(i.expires_ms, i.used_ms or 0) < KEEP_MS
            ]
            if sum(1 for i in invites if i.refusal(now_ms) is None) >= MAX_OPEN:
                raise InviteError(
                    f"{MAX_OPEN} invites are open already; wait until some are used or expire"
                )
            self._write([*invites, invite])
        return invite

    def candidates(self) -> list[Invite]:
        """Every invite kept (open, used, expired), newest first: the keys a join
        handshake is tried with, so a replay is told why it is refused."""
        return sorted(self._read(), key=lambda i: -i.created_ms)[: 4 * MAX_OPEN]

    def claim(self, invite_id: str, node: str, sas: str, now_ms: int | None = None) -> Invite:
        """Mark the invite used by ``node`` — atomically: a second claim fails."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._locked():
            invites = self._read()
            for n, invite in enumerate(invites):
                if invite.id == invite_id:
                    if (why := invite.refusal(now_ms)) is not None:
                        raise InviteError(why)
                    invites[n] = replace(invite, used_by=node, used_ms=now_ms, sas=sas)
                    self._write(invites)
                    return invites[n]
        raise InviteError(f"invite {invite_id} is not known here")

    def get(self, invite_id: str) -> Invite | None:
        return next((i for i in self._read() if i.id == invite_id), None)
