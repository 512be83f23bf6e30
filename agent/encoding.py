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
different value from the same signed bytes. The re-encoding of a decoded
value is fast (:func:`dumps_decoded`): a canonical input's maps arrive in
canonical key order, so cbor2's plain mode rebuilds its bytes once each float
is given its canonical (shortest exact) form.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

from .errors import EncodingError

__all__ = ["MAX_DEPTH", "check_value", "dumps", "dumps_decoded", "loads", "loads_strictly"]

MAX_DEPTH = 32
_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1
_SCALARS = (str, bytes, float, bool, type(None))


_FAST_SCALARS = frozenset({str, bytes, bool, type(None)})
_PLAIN_LEAVES = _FAST_SCALARS | {int}  # scalars plain mode writes as canonical mode does
_LEAVES = _PLAIN_LEAVES | {float}
_MODEL_TYPES = _LEAVES | {list, dict}
_FITS, _PLAIN = 1, 2  # flags from _scan
_HALF, _SINGLE = struct.Struct(">e"), struct.Struct(">f")


def _plain_order(keys: Any) -> bool:
    """True if the keys are text or integers (in range) already in canonical order —
    length-first, then bytewise, of their encodings — so the plain encoder writes
    them exactly as the canonical one would."""
    previous, previous_length = "", -1
    for key in keys:
        if type(key) is not str or not key.isascii():
            return _encoded_order(keys)
        # ASCII text encodes as a head that grows with its length, then its
        # characters: ordering (length, text) is ordering the encodings.
        length = len(key)
        if length < previous_length or (length == previous_length and key <= previous):
            return False
        previous, previous_length = key, length
    return True


def _encoded_order(keys: Any) -> bool:
    """:func:`_plain_order` for any keys: compare their encodings themselves."""
    previous: tuple[int, bytes] = (-1, b"")
    for key in keys:
        kind = type(key)
        if kind is not str and (kind is not int or not _INT_MIN <= key <= _INT_MAX):
            return False
        encoded = cbor2.dumps(key)  # text and in-range integers: plain == canonical
        rank = (len(encoded), encoded)
        if rank <= previous:
            return False
        previous = rank
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


def loads_strictly(data: bytes, max_depth: int = MAX_DEPTH + 1) -> Any:
    """``cbor2.loads`` as every received value is decoded: no indefinite lengths,
    no duplicate map keys, at most ``max_depth`` deep (cbor2's errors propagate).
    Canonical form is the caller's to prove."""
    return cbor2.loads(
        data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=max_depth
    )


def loads(data: bytes, where: str = "value") -> Any:
    """Decode canonical CBOR; raise :class:`EncodingError` for anything else."""
    try:
        value = loads_strictly(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"{where}: not valid CBOR ({exc})") from exc
    data = bytes(data)
    if dumps_decoded(value) == data:
        return value  # inside the model, and data is its canonical encoding
    check_value(value, where)
    if cbor2.dumps(value, canonical=True) != data:
        raise EncodingError(f"{where}: CBOR is not in canonical form (or has trailing bytes)")
    return value


# Fast canonical re-encoding of decoded values -------------------------------
#
# For values of the model, cbor2's canonical mode differs from its plain mode
# in two ways only: it sorts map keys (slowly, ~3.5 µs a map), and it writes
# each finite float in the shortest of float16/32/64 that holds it exactly
# (plain mode writes float64; both write NaN and ±inf as f97e00 / f97c00 /
# f9fc00). Integers, lengths, text and bytes come out the same, and both modes
# write a container as its head and then its items, each encoded on its own.
# So if every map of a value already iterates in canonical key order (sorting
# then changes nothing), plain-encoding a copy in which each float that
# canonical mode shortens — or each map-free array holding floats — is swapped
# for its canonical bytes gives exactly ``cbor2.dumps(value, canonical=True)``.
# Callers still compare those bytes with the received ones, byte for byte.


class _Raw:
    """Canonical bytes (of a float, or of an array), written verbatim by :func:`_write_raw`."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _write_raw(encoder: Any, value: Any) -> None:
    if type(value) is not _Raw:
        raise cbor2.CBOREncodeTypeError(f"cannot encode {type(value).__name__}")
    encoder.write(value.data)


def _ints_fit(items: list[Any], all_ints: bool) -> bool:
    if all_ints:
        return bool(min(items) >= _INT_MIN and max(items) <= _INT_MAX)
    return all(_INT_MIN <= item <= _INT_MAX for item in items if type(item) is int)


class _Slow(Exception):
    """The fast re-encoding does not apply: outside the model, or keys out of order."""


_SHORT: dict[bytes, _Raw] = {}  # float32 bits → canonical float16/32 form (bounded)


def _short_float(value: float) -> Any:
    """``value`` if plain mode writes it as canonical mode does, else a :class:`_Raw`
    of its float16 or float32 form (the shortest that keeps it exactly)."""
    try:
        single = _SINGLE.pack(value)
    except OverflowError:
        return value  # finite beyond float32's range: float64 in both modes
    if _SINGLE.unpack(single)[0] != value:
        return value  # NaN (f97e00 in both modes), or float64 needed in both modes
    raw = _SHORT.get(single)
    if raw is None:
        raw = _Raw(b"\xfa" + single)  # exact in float32 (±inf included) …
        try:
            half = _HALF.pack(value)
            if _HALF.unpack(half)[0] == value:
                raw = _Raw(b"\xf9" + half)  # … and in float16
        except OverflowError:
            pass
        if len(_SHORT) >= 4096:
            _SHORT.clear()
        _SHORT[single] = raw
    return raw


def _ready(value: Any, depth: int) -> Any:
    """``value`` (a list or dict) ready for plain encoding: each float that canonical
    mode shortens replaced by a :class:`_Raw`, each map-free array holding floats
    by a :class:`_Raw` of its canonical encoding; containers copied only where
    that changed something. Raise :class:`_Slow` for anything outside the model
    (exact types) and for any map whose keys are not in canonical order."""
    if depth >= MAX_DEPTH:
        raise _Slow
    kind = type(value)
    if kind is dict:
        previous, previous_length = "", -1
        for key in value:  # _plain_order, inlined for ASCII text keys
            if type(key) is not str or not key.isascii():
                if _encoded_order(value):
                    break
                raise _Slow
            length = len(key)
            if length < previous_length or (length == previous_length and key <= previous):
                raise _Slow
            previous, previous_length = key, length
        pairs: Any = value.items()
    elif kind is list:
        kinds = set(map(type, value))
        if int in kinds and not _ints_fit(value, len(kinds) == 1):
            raise _Slow
        if kinds <= _PLAIN_LEAVES:
            return value
        if kinds <= _LEAVES:  # floats but no map: canonical mode is fast here
            return _Raw(cbor2.dumps(value, canonical=True))
        pairs = enumerate(value)
    else:
        raise _Slow
    copy: Any = None
    for place, item in pairs:
        item_kind = type(item)
        if item_kind in _FAST_SCALARS:
            continue
        if item_kind is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
            raise _Slow
        new = _short_float(item) if item_kind is float else _ready(item, depth + 1)
        if new is not item:
            if copy is None:
                copy = kind(value)
            copy[place] = new  # a dict keeps the key where it was
    return value if copy is None else copy


def dumps_decoded(value: Any) -> bytes | None:
    """``cbor2.dumps(value, canonical=True)``, fast, for a value as the decoder
    builds it: or None if ``value`` is outside the model (exact types: list, not
    tuple) or holds a map whose keys are not in canonical order (then its bytes
    were not canonical anyway; :func:`dumps` decides and explains)."""
    kind = type(value)
    try:
        if kind is list or kind is dict:
            value = _ready(value, 0)
        elif kind is float:
            value = _short_float(value)
        elif not (kind in _FAST_SCALARS or (kind is int and _INT_MIN <= value <= _INT_MAX)):
            return None
        return cbor2.dumps(value, default=_write_raw)
    except (_Slow, cbor2.CBOREncodeError, TypeError, ValueError, OverflowError, RecursionError):
        return None
