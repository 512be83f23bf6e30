"""Checking a reading at the sensor boundary, before it is queued.

A sensor plugin's ``sample()`` (or ``emit``) may return anything; what reaches
the batcher must be storable, or one plugin's mistake would fail the encoding
of a whole flush. :class:`ReadingCheck` refuses a reading — with a problem that
names the field and what is wrong — that the log cannot store or that breaks
the sensor's declared ``fields``. See docs/plugins.md for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping

from .readings import MAX_FIELD_NAME, FieldSpec, Value

__all__ = ["MAX_FIELDS", "MAX_QUALITY", "MAX_TEXT", "ReadingCheck", "check_reading"]

#: fields in one reading, at most (and distinct names from a sensor that declares none)
MAX_FIELDS = 128
#: characters in one text value, at most
MAX_TEXT = 1024
#: characters in a quality flag, at most
MAX_QUALITY = 64
_CBOR_INT_MIN, _CBOR_INT_MAX = -(2**64), 2**64 - 1  # the encoding's integer range


def _name_problem(name: object) -> str | None:
    if type(name) is not str and not isinstance(name, str):
        return f"field name {name!r} is not text"
    if not 1 <= len(name) <= MAX_FIELD_NAME:
        return f"field name {name!r} must be text of 1 to {MAX_FIELD_NAME} characters"
    return None


class ReadingCheck:
    """Checks readings against what a sensor declared, before they are queued.

    A reading is a mapping of field name → value. It is refused (with a problem
    that names the field and what is wrong) when it has more than
    :data:`MAX_FIELDS` fields; a name that is not text of 1 to 64 characters; a
    field the sensor did not declare (a sensor that declares no fields may name
    its own, up to :data:`MAX_FIELDS` distinct names); a value that is not a
    number, text, true/false or null; a number that is NaN, infinite or beyond
    the 64-bit range; text longer than :data:`MAX_TEXT` characters; or anything
    but a number (or null) in a field declared with a ``resolution``.

    Build one per ``fields`` mapping (the runner keeps it while the sensor's
    ``fields`` stay the same object); :meth:`problem` is cheap: a dict lookup
    and a type test per field."""

    __slots__ = ("_declared", "_free", "_numeric", "fields")

    def __init__(self, fields: Mapping[str, FieldSpec]) -> None:
        self.fields = fields
        self._declared = {
            n: spec.resolution is not None for n, spec in fields.items() if _name_problem(n) is None
        }
        self._numeric = any(self._declared.values())
        # names a sensor without declared fields used so far (bounded)
        self._free: set[str] | None = None if fields else set()

    def problem(
        self, values: Mapping[str, Value], quality: str | None = None, ts_ms: int = 0
    ) -> str | None:
        """None if the reading can be stored; else what is wrong with it."""
        if type(ts_ms) is not int and (not isinstance(ts_ms, int) or isinstance(ts_ms, bool)):
            return f"time {ts_ms!r} is not an integer number of milliseconds"
        if quality is not None and (
            not isinstance(quality, str) or not 1 <= len(quality) <= MAX_QUALITY
        ):
            return f"quality {quality!r} must be text of 1 to {MAX_QUALITY} characters"
        if len(values) > MAX_FIELDS:
            return f"{len(values)} fields in one reading; at most {MAX_FIELDS}"
        declared, free = self._declared, self._free
        for name, value in values.items():
            numeric = declared.get(name)
            if numeric is None:
                found = self._undeclared(name, free)
                if found is not None:
                    return found
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # type: ignore[operator]  # NaN or ±inf
                    return f"field {name!r}: {value!r} is not a finite number"
                continue
            if kind is int:
                if not _CBOR_INT_MIN <= value <= _CBOR_INT_MAX:  # type: ignore[operator]
                    return f"field {name!r}: {value} is beyond the 64-bit range"
                continue
            if value is None:
                continue
            found = self._other(name, value, numeric)
            if found is not None:
                return found
        return None

    def _undeclared(self, name: object, free: set[str] | None) -> str | None:
        problem = _name_problem(name)
        if problem is not None:
            return problem
        if free is None:
            known = ", ".join(sorted(self._declared)) or "none"
            return f"field {name!r} is not declared in the sensor's fields (declared: {known})"
        if name not in free:
            if len(free) >= MAX_FIELDS:
                return (
                    f"field {name!r}: more than {MAX_FIELDS} distinct field names from a "
                    "sensor that declares no fields (declare them in `fields`)"
                )
            free.add(name)  # type: ignore[arg-type]  # checked to be text above
        return None

    @staticmethod
    def _other(name: str, value: object, numeric: bool | None) -> str | None:
        """The slow path: a value that is not an exact float, int or None."""
        if isinstance(value, bool):
            return f"field {name!r}: {value!r} is not a number" if numeric else None
        if isinstance(value, int | float):  # subclasses (IntEnum …): checked as the base type
            base: Value = float(value) if isinstance(value, float) else int(value)
            return ReadingCheck({}).problem({name: base})
        if isinstance(value, str):
            if numeric:
                shown = f" {value!r}" if len(value) <= 40 else ""
                return (
                    f"field {name!r}: text{shown} is not a number "
                    "(the field is declared with a resolution)"
                )
            if len(value) > MAX_TEXT:
                return f"field {name!r}: text of {len(value)} characters; at most {MAX_TEXT}"
            return None
        kind = type(value).__name__
        if numeric:
            return (
                f"field {name!r}: a {kind} value is not a number "
                "(the field is declared with a resolution)"
            )
        return f"field {name!r}: a {kind} value is not a number, text, true/false or null"


def check_reading(
    values: Mapping[str, Value],
    fields: Mapping[str, FieldSpec],
    quality: str | None = None,
    ts_ms: int = 0,
) -> str | None:
    """None if ``values`` can be stored as one reading of a sensor declaring
    ``fields``; else the problem, naming the field (see :class:`ReadingCheck`)."""
    return ReadingCheck(fields).problem(values, quality, ts_ms)
