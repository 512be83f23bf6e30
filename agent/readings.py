"""Readings and the batch body that carries many of them in one entry.

A sensor produces :class:`Reading` values; the agent keeps them for one flush
interval and writes them as the body of a single entry, so one signature and
one row cover many readings. The body is columnar, so repeated field names,
units and timestamps cost almost nothing::

    {
      "t": [t0, d1, d2, …],            sample times, ms: t0 absolute, then differences ≥ 0
      "v": {field: column, …},         one column per field, as long as "t"
      "u": {field: unit, …},           optional
      "q": {index: flag, …}            optional: readings whose quality is flagged
    }
    column = [x0, x1, …]                plain values: number, text, bool or null
           | {"e": E, "d": [n0, d1, …]} decimal-scaled integers, delta coded:
                                        x_i = (n0 + d1 + … + d_i) · 10^E

A field declared with a ``resolution`` that is a power of ten (0.01 → E = -2)
is stored scaled: a temperature at 0.01 °C costs 1–3 bytes per reading
instead of 9. Values are rounded to the declared resolution — that is the
contract a plugin makes by declaring it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FieldSpec",
    "Reading",
    "Value",
    "decode_batch",
    "encode_batch",
    "is_batch",
    "resolution_exponent",
]

Value = float | int | str | bool | None
MAX_FIELD_NAME = 64
_MAX_SCALED = 2**53  # beyond this a float is not exact as an integer anyway


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What a sensor says about one of its fields.

    ``resolution``, when given, must be a power of ten (``0.01``, ``1``, ``10``).
    ``device_class`` is a hint for dashboards (``temperature``, ``humidity`` …).
    """

    unit: str | None = None
    resolution: float | None = None
    device_class: str | None = None

    def __post_init__(self) -> None:
        if self.resolution is not None:
            resolution_exponent(self.resolution)


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample: a value per field at ``ts_ms`` (milliseconds, node clock).

    ``quality`` flags a doubtful sample (``"bad"``, ``"clipped"``, …; None = good);
    ``urgent`` asks the agent to write it at once instead of at the next flush.
    """

    ts_ms: int
    values: Mapping[str, Value]
    quality: str | None = None
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class DecodedReading:
    ts_ms: int
    values: dict[str, Value] = field(default_factory=dict)
    quality: str | None = None


def resolution_exponent(resolution: float) -> int:
    """``0.01`` → ``-2``; raise ValueError unless ``resolution`` is a power of ten."""
    if not isinstance(resolution, int | float) or not resolution > 0:
        raise ValueError(f"resolution {resolution!r} must be a positive power of ten")
    exponent = round(math.log10(resolution))
    if not -12 <= exponent <= 12 or not math.isclose(resolution, 10.0**exponent, rel_tol=1e-9):
        raise ValueError(f"resolution {resolution!r} must be a power of ten, e.g. 0.01 or 1")
    return exponent


def _scale(value: float | int, exponent: int) -> int:
    factor: int = 10 ** abs(exponent)
    return round(value * factor) if exponent < 0 else round(value / factor)


def _unscale(number: int, exponent: int) -> float | int:
    factor: int = 10 ** abs(exponent)
    return number / factor if exponent < 0 else number * factor


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


def _deltas(numbers: Sequence[int]) -> list[int]:
    return [numbers[0]] + [b - a for a, b in itertools.pairwise(numbers)]


def _undeltas(deltas: Sequence[int]) -> list[int]:
    out, total = [], 0
    for d in deltas:
        total += d
        out.append(total)
    return out


def encode_batch(readings: Sequence[Reading], fields: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """The batch body for ``readings`` (sorted by time; need not be on input)."""
    if not readings:
        raise ValueError("a batch holds at least one reading")
    ordered = sorted(readings, key=lambda r: r.ts_ms)
    names = sorted({name for r in ordered for name in r.values})
    for name in names:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_FIELD_NAME:
            raise ValueError(f"field name {name!r} must be text of 1 to {MAX_FIELD_NAME} chars")
    body: dict[str, Any] = {"t": _deltas([r.ts_ms for r in ordered])}
    columns: dict[str, Any] = {}
    for name in names:
        values = [r.values.get(name) for r in ordered]
        spec = fields.get(name)
        if spec is not None and spec.resolution is not None and all(map(_is_number, values)):
            exponent = resolution_exponent(spec.resolution)
            scaled = [_scale(v, exponent) for v in values]  # type: ignore[arg-type]
            if all(abs(n) <= _MAX_SCALED for n in scaled):
                columns[name] = {"e": exponent, "d": _deltas(scaled)}
                continue
        columns[name] = values
    body["v"] = columns
    units = {n: fields[n].unit for n in names if n in fields and fields[n].unit}
    if units:
        body["u"] = units
    flags = {i: r.quality for i, r in enumerate(ordered) if r.quality is not None}
    if flags:
        body["q"] = flags
    return body


def is_batch(body: object) -> bool:
    """True if ``body`` has the shape of a reading batch."""
    return isinstance(body, dict) and isinstance(body.get("t"), list) and "v" in body


def decode_batch(body: Mapping[str, Any]) -> list[DecodedReading]:
    """Readings back from a batch body; raise ValueError naming what is malformed."""
    if not is_batch(body):
        raise ValueError("not a reading batch: needs 't' (times) and 'v' (values)")
    deltas = body["t"]
    if not deltas or not all(type(d) is int for d in deltas):
        raise ValueError("batch 't' must be a non-empty list of integers")
    times = _undeltas(deltas)
    count = len(times)
    columns = body["v"]
    if not isinstance(columns, dict):
        raise ValueError("batch 'v' must map field names to columns")
    decoded: dict[str, list[Value]] = {}
    for name, column in columns.items():
        if isinstance(column, dict):
            exponent, numbers = column.get("e"), column.get("d")
            if type(exponent) is not int or not isinstance(numbers, list):
                raise ValueError(f"scaled column {name!r} needs integer 'e' and list 'd'")
            if not all(type(n) is int for n in numbers):
                raise ValueError(f"scaled column {name!r} holds a non-integer")
            values: list[Value] = [_unscale(n, exponent) for n in _undeltas(numbers)]
        elif isinstance(column, list):
            values = column
        else:
            raise ValueError(f"column {name!r} is neither a list nor a scaled column")
        if len(values) != count:
            raise ValueError(f"column {name!r} has {len(values)} values for {count} times")
        decoded[name] = values
    flags = body.get("q", {})
    if not isinstance(flags, dict):
        raise ValueError("batch 'q' must map reading indexes to flags")
    return [
        DecodedReading(
            ts_ms=times[i],
            values={name: column[i] for name, column in decoded.items() if column[i] is not None},
            quality=flags.get(i),
        )
        for i in range(count)
    ]
