"""The dashboard's local access token: one random secret in the node's home.

``HOME/state/http-token`` (mode 0600, in the 0700 home) holds it; ``lichen http
token`` makes it the first time and prints it (``--new`` replaces it). The agent
reads it at start: serving beyond loopback without one is refused, with the fix.
A person's browser presents it once as ``?token=`` and then holds it in an
``HttpOnly``, ``SameSite=Strict`` cookie; scripts send ``Authorization: Bearer``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ..errors import ConfigError
from ..fsutil import atomic_write
from ..home import PRIVATE_FILE

__all__ = ["MIN_TOKEN", "TOKEN_COOKIE", "load_token", "make_token"]

MIN_TOKEN = 16
#: the cookie a browser keeps the token in
TOKEN_COOKIE = "lichen_token"
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def load_token(path: Path) -> str | None:
    """The token in ``path``, or None if there is none yet. A token that is too
    short or not URL-safe is a :class:`ConfigError` naming the file."""
    try:
        token = path.read_text("ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the dashboard's token: {exc}", file=str(path)) from None
    if len(token) < MIN_TOKEN or not set(token) <= _URL_SAFE:
        raise ConfigError(
            f"the dashboard's token must be at least {MIN_TOKEN} characters of A-Z a-z 0-9 - _",
            file=str(path),
            fix="lichen http token --new (makes a random one)",
        )
    return token


def make_token(path: Path, *, new: bool = False) -> tuple[str, bool]:
    """The token in ``path``, made first if there is none (or ``new``): ``(token,
    made)``."""
    if not new:
        token = load_token(path)
        if token is not None:
            return token, False
    token = secrets.token_urlsafe(32)
    atomic_write(path, (token + "\n").encode("ascii"), mode=PRIVATE_FILE)
    return token, True
