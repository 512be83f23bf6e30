"""Deterministic CBOR: one byte string for one value, and nothing else accepted.

Lichen signs and hashes bytes, so every value must have exactly one encoding.
We use cbor2's canonical mode (RFC 7049 §3.9 / RFC 8949 §4.2.3): shortest
integer and length forms, definite lengths only, map keys sorted length-first
then bytewise, floats in the shortest form that keeps their value.

The value model is deliberately small — what JSON has, plus byte strings:

    None, bool, int (-2**64 … 2**64-1), float, str, bytes, list, dict
    (dict keys: str or int)

:func:`loads` is strict: it rejects indefinite lengths, duplicate map keys,
tags, trailing bytes and any encoding that is not the canonical one (by
re-encoding and comparing), so a decoder in another language cannot read a
different value from the same signed bytes.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import EncodingError

__all__ = ["MAX_DEPTH", "check_value", "dumps", "loads"]

MAX_DEPTH = 32
_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1
_SCALARS = (str, bytes, float, bool, type(None))


_FAST_SCALARS = frozenset({str, bytes, bool, type(None)})
_FITS, _PLAIN = 1, 2  # flags from _scan


def _plain_order(keys: Any) -> bool:
    """True if the keys are short ASCII text already in canonical order, so the
    plain encoder writes them exactly as the canonical one would."""
    previous, previous_length = "", -1
    for key in keys:
        if type(key) is not str:
            return False
        length = len(key)
        if length >= 24 or not key.isascii():
            return False
        if length < previous_length or (length == previous_length and key <= previous):
            return False
        previous, previous_length = key, length
    return True


def _scan(value: Any, depth: int) -> int:
    """Fast check with exact types. ``_FITS`` set: surely inside the model (if
    unset, :func:`check_value` looks closer and explains). ``_PLAIN`` set too: no
    floats and every map already in canonical key order, so cbor2's plain
    (faster) encoding is the canonical one."""
    kind = type(value)
    if kind in _FAST_SCALARS:
        return _FITS | _PLAIN
    if kind is int:
        return _FITS | _PLAIN if _INT_MIN <= value <= _INT_MAX else 0
    if kind is float:
        return _FITS
    if depth >= MAX_DEPTH:
        return 0
    flags = _FITS | _PLAIN
    if kind is list or kind is tuple:
        items = value
    elif kind is dict:
        for key in value:
            if type(key) is not str and (type(key) is not int or not _INT_MIN <= key <= _INT_MAX):
                return 0
        if not _plain_order(value):
            flags = _FITS
        items = value.values()
    else:
        return 0
    for item in items:
        item_kind = type(item)
        if item_kind in _FAST_SCALARS:
            continue
        if item_kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return 0
        elif item_kind is float:
            flags = _FITS
        else:
            flags &= _scan(item, depth + 1)
            if not flags:
                return 0
    return flags


def check_value(value: Any, where: str = "value", depth: int = 0) -> None:
    """Raise :class:`EncodingError` naming the path of the first unsupported part."""
    if depth == 0 and _scan(value, 0):
        return
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodingError(f"{where}: integer {value} is outside -2**64 … 2**64-1")
        return
    if depth >= MAX_DEPTH:
        raise EncodingError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise EncodingError(
                    f"{where}: map key {key!r} is a {type(key).__name__}; only text "
                    "and integer keys are allowed"
                )
            check_value(key, f"{where} key", depth + 1)
            check_value(item, f"{where}[{key!r}]", depth + 1)
        return
    raise EncodingError(
        f"{where}: {type(value).__name__} cannot be stored; use None, bool, int, float, "
        "str, bytes, list or dict"
    )


def dumps(value: Any, *, checked: bool = False, where: str = "value") -> bytes:
    """Encode ``value`` canonically. ``checked=True`` skips the type walk (trusted input)."""
    flags = _scan(value, 0)
    if not flags and not checked:
        check_value(value, where)
    try:
        if flags & _PLAIN:
            return cbor2.dumps(value)  # proven identical to canonical, and faster
        return cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode value: {exc}") from exc


def loads(data: bytes, where: str = "value") -> Any:
    """Decode canonical CBOR; raise :class:`EncodingError` for anything else."""
    try:
        value = cbor2.loads(
            data,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=MAX_DEPTH + 1,
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"{where}: not valid CBOR ({exc})") from exc
    check_value(value, where)
    if cbor2.dumps(value, canonical=True) != bytes(data):
        raise EncodingError(f"{where}: CBOR is not in canonical form (or has trailing bytes)")
    return value
