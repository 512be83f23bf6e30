"""Readings and the batch body that carries many of them in one entry.

A sensor produces readings; the agent keeps them for one flush interval and
writes them as the body of a single entry, so one signature and one row cover
many readings. The body is columnar, so field names and timestamps cost
almost nothing per reading::

    {
      "q": {index: flag, …},            optional: readings whose quality is flagged
      "t": [t0, d1, e2, e3, …],         sample times, ms: t0 absolute, d1 = t1 - t0,
                                        then e_i = (t_i - t_{i-1}) - (t_{i-1} - t_{i-2})
      "u": {field: unit, …},            optional (the agent describes units once, in
                                        the "_sensors" document, instead)
      "v": {field: column, …}           one column per field, as long as "t"
    }
    column = [x0, x1, …]                plain values: number, text, bool or null
           | {"d": [n0, d1, …], "e": E} decimal-scaled integers, delta coded:
                                        x_i = (n0 + d1 + … + d_i) · 10^E

Times are delta-of-delta coded: a sensor sampled every 100 ms has second
differences near zero, one byte each. A field declared with a ``resolution``
that is a power of ten (0.01 → E = -2) is stored scaled: a temperature at
0.01 °C costs 1–3 bytes per reading instead of 9. Values are rounded to the
declared resolution — that is the contract a plugin makes by declaring it.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SENSORS_COLLECTION",
    "Columns",
    "DecodedReading",
    "FieldSpec",
    "Reading",
    "Value",
    "decode_reading_batch",
    "describe_id",
    "encode_reading_batch",
    "is_reading_batch",
    "resolution_exponent",
]

Value = float | int | str | bool | None
MAX_FIELD_NAME = 64
#: where the agent describes each reading collection it writes (plugin, interval,
#: fields with unit / resolution / device class): one document per collection
SENSORS_COLLECTION = "_sensors"
_MAX_SCALED = 2**53  # beyond this a float is not exact as an integer anyway
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


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

    def describe(self) -> dict[str, Any]:
        """The JSON-able description written into the ``_sensors`` document."""
        out: dict[str, Any] = {}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.resolution is not None:
            out["resolution"] = self.resolution
        if self.device_class is not None:
            out["device_class"] = self.device_class
        return out


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


def describe_id(collection: str, node_id: str) -> str:
    """The id of the ``_sensors`` document describing ``collection`` of ``node_id``."""
    return f"{collection}@{node_id}"


def _new_column(value: Value, padding: int) -> MutableSequence[Value]:
    """A column for ``value``'s type: raw 8-byte floats or integers where possible
    (no object per reading, nothing for the allocator to fragment), else a list."""
    kind = type(value)
    if padding == 0 and kind is float:
        return array("d")  # type: ignore[return-value]
    if padding == 0 and kind is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
        return array("q")  # type: ignore[return-value]
    return [None] * padding


class Columns:
    """Readings of one collection held column-wise: times, one column per field,
    flags by index. Numeric columns are ``array``s of raw values, so a pending
    reading costs ~8 bytes per field rather than a Python object, and the
    memory of a busy agent stays flat. Not thread-safe; the batcher locks."""

    __slots__ = ("columns", "quality", "times")

    def __init__(self) -> None:
        self.times: array[int] = array("q")
        self.columns: dict[str, MutableSequence[Value]] = {}
        self.quality: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.times)

    def _widen(self, name: str) -> list[Value]:
        column = self.columns[name]
        if not isinstance(column, list):
            column = self.columns[name] = list(column)
        return column

    def add(self, ts_ms: int, values: Mapping[str, Value], quality: str | None = None) -> None:
        index = len(self.times)
        self.times.append(ts_ms)
        columns = self.columns
        for name, value in values.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = _new_column(value, index)
            elif type(column) is array and (
                type(value) is not (float if column.typecode == "d" else int)
                or (column.typecode == "q" and not _INT64_MIN <= value <= _INT64_MAX)
            ):
                column = self._widen(name)
            column.append(value)
        if len(values) != len(columns):  # a field this reading lacks: null in its column
            for name, column in columns.items():
                if len(column) == index:
                    self._widen(name).append(None)
        if quality is not None:
            self.quality[index] = quality

    def values(self, name: str) -> list[Value]:
        return list(self.columns[name])

    def drop_oldest(self, count: int) -> None:
        del self.times[:count]
        for column in self.columns.values():
            del column[:count]
        self.quality = {i - count: q for i, q in self.quality.items() if i >= count}

    def split(self, index: int) -> tuple[Columns, Columns]:
        """Two halves: readings ``[:index]`` and ``[index:]``."""
        head, tail = Columns(), Columns()
        head.times, tail.times = self.times[:index], self.times[index:]
        for name, column in self.columns.items():
            head.columns[name], tail.columns[name] = column[:index], column[index:]
        head.quality = {i: q for i, q in self.quality.items() if i < index}
        tail.quality = {i - index: q for i, q in self.quality.items() if i >= index}
        return head, tail

    def sorted_by_time(self) -> Columns:
        times = self.times
        if all(a <= b for a, b in itertools.pairwise(times)):
            return self
        order = sorted(range(len(times)), key=times.__getitem__)
        out = Columns()
        out.times = array("q", (times[i] for i in order))
        out.columns = {n: [c[i] for i in order] for n, c in self.columns.items()}
        position = {old: new for new, old in enumerate(order)}
        out.quality = {position[i]: q for i, q in self.quality.items()}
        return out


def _unscale(number: int, exponent: int) -> float | int:
    factor: int = 10 ** abs(exponent)
    return number / factor if exponent < 0 else number * factor


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


def _all_numbers(column: MutableSequence[Value], values: list[Value]) -> bool:
    """Every value is a finite number (fast for the raw arrays numeric columns are)."""
    if type(column) is array:
        return column.typecode == "q" or all(map(math.isfinite, values))  # type: ignore[arg-type]
    return all(map(_is_number, values))


def _deltas(numbers: Sequence[int]) -> list[int]:
    return [numbers[0]] + [b - a for a, b in itertools.pairwise(numbers)]


def _undeltas(deltas: Sequence[int]) -> list[int]:
    return list(itertools.accumulate(deltas))


def _canonical_order(name: str) -> tuple[int, bytes]:
    data = name.encode()
    return len(data), data


def encode_columns(
    columns: Columns, fields: Mapping[str, FieldSpec], *, units: bool = False
) -> dict[str, Any]:
    """The batch body for ``columns`` (sorted by time first if they are not).

    ``units=True`` also writes the units into the body ("u"); the agent leaves
    them to the ``_sensors`` document instead."""
    if not len(columns):
        raise ValueError("a batch holds at least one reading")
    columns = columns.sorted_by_time()
    encoded: dict[str, Any] = {}
    for name in sorted(columns.columns, key=_canonical_order):  # canonical key order
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_FIELD_NAME:
            raise ValueError(f"field name {name!r} must be text of 1 to {MAX_FIELD_NAME} chars")
        column = columns.columns[name]
        values = list(column)
        spec = fields.get(name)
        if spec is not None and spec.resolution is not None and _all_numbers(column, values):
            exponent = resolution_exponent(spec.resolution)
            factor: int = 10 ** abs(exponent)
            numbers: list[float] = values  # type: ignore[assignment]  # checked just above
            if exponent < 0:
                scaled = [round(v * factor) for v in numbers]
            else:
                scaled = [round(v / factor) for v in numbers]
            if max(map(abs, scaled)) <= _MAX_SCALED:
                encoded[name] = {"d": _deltas(scaled), "e": exponent}
                continue
        encoded[name] = values
    # keys inserted in canonical order: "q" < "t" < "u" < "v"
    body: dict[str, Any] = {}
    if columns.quality:
        body["q"] = dict(sorted(columns.quality.items()))
    times = columns.times.tolist()
    body["t"] = [times[0], *_deltas(_deltas(times)[1:])] if len(times) > 1 else [times[0]]
    if units:
        unit_map = {n: fields[n].unit for n in encoded if n in fields and fields[n].unit}
        if unit_map:
            body["u"] = unit_map
    body["v"] = encoded
    return body


def encode_reading_batch(
    readings: Sequence[Reading], fields: Mapping[str, FieldSpec], *, units: bool = False
) -> dict[str, Any]:
    """The batch body for a sequence of :class:`Reading` (any order)."""
    columns = Columns()
    for reading in readings:
        columns.add(reading.ts_ms, reading.values, reading.quality)
    return encode_columns(columns, fields, units=units)


def is_reading_batch(body: object) -> bool:
    """True if ``body`` has the shape of a reading batch."""
    return isinstance(body, dict) and isinstance(body.get("t"), list) and "v" in body


def _times(coded: list[Any]) -> list[int]:
    if not coded or not all(type(d) is int for d in coded):
        raise ValueError("batch 't' must be a non-empty list of integers")
    if len(coded) == 1:
        return [coded[0]]
    differences = _undeltas(coded[1:])
    return _undeltas([coded[0], *differences])


def decode_reading_batch(body: Mapping[str, Any]) -> list[DecodedReading]:
    """Readings back from a batch body; raise ValueError naming what is malformed."""
    if not is_reading_batch(body):
        raise ValueError("not a reading batch: needs 't' (times) and 'v' (values)")
    times = _times(body["t"])
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
