"""Handshake patterns as token tuples, psk modifiers, and protocol names (spec rev. 34, 7–9).

A pattern is data, written as in the spec: one tuple of tokens per message,
initiator first. Lichen needs ``XX``; the ``pskN`` modifiers are applied by
rule, so ``XXpsk3`` (and any ``XXpsk0+psk2``…) comes from the same table::

    >>> PATTERNS["XX"].messages
    (('e',), ('e', 'ee', 's', 'es'), ('s', 'se'))
    >>> NoiseProtocol.from_name("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b").pattern.messages[2]
    ('s', 'se', 'psk')

:meth:`NoiseProtocol.from_name` resolves every part of a protocol name through
the registries of :mod:`agent.channel.primitives`; a name it cannot serve is a
:class:`ValueError` that says which part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .primitives import (
    CIPHER_FUNCTIONS,
    DH_FUNCTIONS,
    HASH_FUNCTIONS,
    CipherFunctions,
    DHFunctions,
    HashFunctions,
)

__all__ = ["PATTERNS", "HandshakePattern", "NoiseProtocol", "Token", "apply_modifiers"]

Token = Literal["e", "s", "ee", "es", "se", "ss", "psk"]
MessagePattern = tuple[Token, ...]


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A handshake pattern without pre-messages: a name and its message patterns.

    ``messages[0]`` is sent by the initiator, ``messages[1]`` by the responder,
    and so on alternately::

        >>> HandshakePattern("NN", (("e",), ("e", "ee"))).uses_psk
        False
    """

    name: str
    messages: tuple[MessagePattern, ...]

    @property
    def uses_psk(self) -> bool:
        """True if any message holds a ``psk`` token (PSK mode, spec 9.2)."""
        return any("psk" in message for message in self.messages)


PATTERNS: dict[str, HandshakePattern] = {
    "XX": HandshakePattern("XX", (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
}

_PSK_MODIFIER = re.compile(r"psk(\d+)")


def apply_modifiers(pattern: HandshakePattern, modifiers: tuple[str, ...]) -> HandshakePattern:
    """Apply ``pskN`` modifiers in order (spec 9.4) and check the PSK validity rule (9.3).

    ``psk0`` puts a ``psk`` token at the start of the first message; ``pskN``
    (N ≥ 1) at the end of the N-th message.
    """
    messages = [list(message) for message in pattern.messages]
    for modifier in modifiers:
        match = _PSK_MODIFIER.fullmatch(modifier)
        if match is None:
            raise ValueError(f"unsupported pattern modifier {modifier!r}")
        position = int(match.group(1))
        if position > len(messages):
            raise ValueError(
                f"modifier {modifier!r} needs {position} messages; "
                f"{pattern.name} has {len(messages)}"
            )
        if position == 0:
            messages[0].insert(0, "psk")
        else:
            messages[position - 1].append("psk")
    modified = HandshakePattern(
        pattern.name + "+".join(modifiers), tuple(tuple(m) for m in messages)
    )
    _check_psk_validity(modified)
    return modified


def _check_psk_validity(pattern: HandshakePattern) -> None:
    """Spec 9.3: after a ``psk`` token, a party may only send encrypted data once
    it has sent an ephemeral key (in this message or an earlier one)."""
    psk_seen = False
    sent_e = [False, False]
    for index, message in enumerate(pattern.messages):
        sender = index % 2
        sent_e[sender] = sent_e[sender] or "e" in message
        psk_seen = psk_seen or "psk" in message
        if psk_seen and not sent_e[sender]:
            raise ValueError(f"{pattern.name}: message {index + 1} breaks the PSK validity rule")


_NAME = re.compile(
    r"Noise_(?P<pattern>[A-Z][A-Z0-9]*)(?P<modifiers>[a-z][a-z0-9+]*)?"
    r"_(?P<dh>[^_]+)_(?P<cipher>[^_]+)_(?P<hash>[^_]+)"
)


@dataclass(frozen=True, slots=True)
class NoiseProtocol:
    """A concrete Noise protocol: a (modified) pattern and its three primitives.

    Build it from a spec name; ``name`` is what ``InitializeSymmetric`` hashes::

        protocol = NoiseProtocol.from_name("Noise_XX_25519_ChaChaPoly_BLAKE2b")
        protocol.dh.dhlen  # 32
    """

    name: str
    pattern: HandshakePattern
    dh: DHFunctions
    cipher: CipherFunctions
    hash: HashFunctions

    @classmethod
    def from_name(cls, name: str) -> NoiseProtocol:
        match = _NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"{name!r} is not a Noise protocol name")
        base = PATTERNS.get(match.group("pattern"))
        if base is None:
            raise ValueError(
                f"{name!r}: unsupported pattern {match.group('pattern')!r} "
                f"(supported: {', '.join(sorted(PATTERNS))})"
            )
        raw_modifiers = match.group("modifiers")
        modifiers = tuple(raw_modifiers.split("+")) if raw_modifiers else ()
        pattern = apply_modifiers(base, modifiers) if modifiers else base
        parts = (
            ("DH", match.group("dh"), DH_FUNCTIONS),
            ("cipher", match.group("cipher"), CIPHER_FUNCTIONS),
            ("hash", match.group("hash"), HASH_FUNCTIONS),
        )
        for kind, part, registry in parts:
            if part not in registry:
                raise ValueError(
                    f"{name!r}: unsupported {kind} {part!r} (supported: {', '.join(registry)})"
                )
        return cls(
            name=name,
            pattern=pattern,
            dh=DH_FUNCTIONS[match.group("dh")],
            cipher=CIPHER_FUNCTIONS[match.group("cipher")],
            hash=HASH_FUNCTIONS[match.group("hash")],
        )
