"""Every error Lichen raises on purpose derives from :class:`LichenError`.

Each class is also mixed with the standard type it most resembles (as gpiozero
does), so ``except ValueError`` keeps working for callers who do not know us.
Messages name *what* was wrong, the offending value where it is safe to show,
and the fix when there is one.
"""

from __future__ import annotations

import errno as _errno
import re

__all__ = [
    "AddressError",
    "BadSignature",
    "ChainError",
    "ChannelError",
    "ConfigError",
    "EncodingError",
    "EntryError",
    "ForkError",
    "IdentityError",
    "LichenError",
    "LocalProtocolError",
    "MalformedEntry",
    "OversizedEntry",
    "PluginError",
    "RemoteProtocolError",
    "SampleError",
    "ServeError",
    "StoreError",
    "TransportError",
]


class LichenError(Exception):
    """Root of every error Lichen raises on purpose."""


class ConfigError(LichenError, ValueError):
    """A configuration file or option is wrong.

    ``str(error)`` reads ``FILE: [section] key = value: problem. Fix: …``.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        value: object = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        self.value = value
        self.fix = fix
        parts = []
        if file:
            parts.append(f"{file}: ")
        if key:
            parts.append(f"{key}" + (f" = {value!r}" if value is not None else "") + ": ")
        parts.append(problem)
        if fix:
            parts.append(f". Fix: {fix}")
        super().__init__("".join(parts))


class AddressError(LichenError, ValueError):
    """A link address (``tcp://HOST:PORT``, ``mqtt://HOST``) is malformed or names
    no installed plugin. ``str(error)`` reads ``'ADDRESS': problem. Fix: …``."""

    def __init__(self, address: str, problem: str, fix: str | None = None) -> None:
        self.address = address
        self.problem = problem
        self.fix = fix
        super().__init__(f"{address!r}: {problem}" + (f". Fix: {fix}" if fix else ""))


class IdentityError(LichenError):
    """The node's key file is missing, unreadable, too open or corrupt."""


class EncodingError(LichenError, ValueError):
    """A value cannot be encoded, or bytes are not canonical CBOR."""


class EntryError(LichenError, ValueError):
    """An entry is invalid. ``reason`` says why; ``where`` names the entry if known."""

    def __init__(self, reason: str, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)


class MalformedEntry(EntryError):
    """The bytes do not decode to a well-formed, canonical version-1 entry."""


class OversizedEntry(EntryError):
    """The encoded entry is larger than the configured cap."""


class BadSignature(EntryError):
    """The Ed25519 signature does not verify against the entry's author."""


class ChainError(EntryError):
    """The entry does not fit its feed: ``prev`` or timestamp disagree with a neighbour."""


class ForkError(EntryError):
    """A different entry already holds this ``(author, seq)``: the author equivocated.

    The offending entry is recorded as evidence and never stored over the first;
    ``evidence`` carries it (an :class:`~agent.entry.Entry`) and ``reason`` says
    which stored entry it contradicts.
    """

    def __init__(self, reason: str, where: str | None = None, *, evidence: object = None) -> None:
        super().__init__(reason, where)
        self.evidence = evidence


class StoreError(LichenError):
    """The log database cannot be opened, migrated or written."""


class PluginError(LichenError):
    """A plugin cannot be found, configured or started."""


class SampleError(PluginError):
    """One sample failed — a bus error, a checksum that does not match — and the
    next may not. Raised from ``Sensor.sample``, it is counted on the instance
    (``sample_errors`` and ``last_sample_error`` in ``lichen status``), logged,
    and the slot skipped; the instance is not restarted. Raised from ``open``
    (or from a ``run`` of one's own), it restarts the instance like any error."""


class ServeError(LichenError, OSError):
    """A server cannot listen on its address: taken by another program, not an
    address of this machine, a port that needs privileges. ``str(error)`` reads
    ``cannot serve WHAT on ADDRESS: REASON. Fix: …``; ``errno`` is the system's
    (None if it gave none), so ``except OSError`` still sees it."""

    def __init__(
        self, what: str, address: str, reason: str, fix: str | None = None,
        *, errno: int | None = None,
    ) -> None:  # fmt: skip
        self.what = what
        self.address = address
        self.reason = reason
        self.fix = fix
        super().__init__(
            f"cannot serve {what} on {address}: {reason}" + (f". Fix: {fix}" if fix else "")
        )
        self.errno = errno

    @classmethod
    def of(
        cls, exc: OSError, what: str, address: str, fix: str | None, host: str | None = None
    ) -> ServeError:
        """The system's ``exc`` worded once: ``address already in use
        (EADDRINUSE)``, naming the address a host name resolved to if it is not
        ``host``; a folder the server needs names itself (``exc.filename``)."""
        reason = exc.strerror or str(exc)
        name = None if exc.errno is None else _errno.errorcode.get(exc.errno)
        details = [name] if name is not None else []
        bound = _BIND_FAILED.fullmatch(reason)
        if bound is not None:  # asyncio's wording: the socket address it tried, then why
            reason = bound.group(2)
            if host is not None and bound.group(1) != host:
                details.append(f"at {bound.group(1)}")
        if exc.filename is not None:
            reason = f"{exc.filename}: {reason}"
        return cls(what, address, reason + (f" ({', '.join(details)})" if details else ""), fix,
                   errno=exc.errno)  # fmt: skip


_BIND_FAILED = re.compile(r"error while attempting to bind on address \('([^']*)'.*?\): (.*)")


class TransportError(LichenError, ConnectionError):
    """A stream or radio failed: the peer vanished, the link broke, a write went
    to a closed stream."""


class ChannelError(LichenError, ConnectionError):
    """The encrypted channel could not be set up or broke: a failed handshake, a
    peer that is not trusted, a message that does not decrypt."""


class LocalProtocolError(LichenError, RuntimeError):
    """We misused a protocol state machine (a bug on our side), h11-style."""


class RemoteProtocolError(LichenError, ConnectionError):
    """The peer broke the protocol: garbage, a bad frame, a forged or forked entry,
    more data than we granted. The session ends with this reason; nothing
    already stored changes."""
