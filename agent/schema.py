"""Typed configuration tables: TOML tables checked against dataclasses.

Both ``lichen.toml`` and every plugin's configuration are declared as
dataclasses and checked by :func:`build`, so every error has the same shape —
file, table, key, bad value, problem and fix::

    lichen.toml: [log] durability = 'fsync': must be one of 'normal', 'full'.
    Fix: durability = "normal" or durability = "full"

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]``,
``list[str]``, ``list[int]``, ``list[float]``, ``dict[str, str]`` and
``X | None``. A key is declared with :func:`setting` — its default, ``min``,
``max``, a ``check`` (a function that raises ValueError naming the problem,
e.g. :func:`readable_file`) and the ``help`` shown as the fix; it is a
dataclass field whose metadata carries these. Unknown keys are refused with a
did-you-mean suggestion.

    @dataclass(frozen=True, kw_only=True)
    class ProbeConfig(SensorConfig):
        dry: float = setting(3.1, min=0.0, help="volts when dry, e.g. dry = 3.1")
        wet: float = setting(1.2, min=0.0, help="volts in water, e.g. wet = 1.2")
        ca_file: str = setting("", check=readable_file, help='e.g. "/etc/ca.pem"')

        def __post_init__(self) -> None:  # a rule across keys
            if self.wet >= self.dry:
                raise ConfigError(f"is not below dry ({self.dry})", key="wet",
                                  fix="measure the probe dry and in water")

A :class:`ConfigError` raised there with a bare ``key`` gets the file and the
table's label (:func:`instance_label` for a plugin instance) in front of it::

    lichen.toml: [[sensors.probe]] "bed-2" wet: is not below dry (3.1). Fix: …
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import ConfigError

__all__ = [
    "build",
    "describe",
    "distinct_labels",
    "instance_label",
    "readable_file",
    "replace_checked",
    "setting",
]

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    check: Callable[[Any], object] | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """One key of a configuration table: a dataclass field that :func:`build`
    checks against ``min`` / ``max`` (inclusive) and ``check`` (called with the
    converted value; a ValueError it raises is the problem), and whose ``help``
    is the fix shown when the key is missing or wrong. Without ``default`` or
    ``default_factory`` the key is required."""
    metadata: dict[str, Any] = {"help": help}
    if min is not None:
        metadata["min"] = min
    if max is not None:
        metadata["max"] = max
    if check is not None:
        metadata["check"] = check
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def readable_file(path: str) -> None:
    """A ``check`` for a path key: ``""`` (none), else a file this user can read."""
    if path == "":
        return
    if not os.path.isfile(path):
        raise ValueError("no such file")
    if not os.access(path, os.R_OK):
        raise ValueError("the file is not readable by this user")


def instance_label(group: str, plugin: str, index: int, name: object = None) -> str:
    """How every message names one ``[[GROUP.PLUGIN]]`` table of ``lichen.toml``
    (``index``: its place among that plugin's tables, from 0; ``name``: its
    ``name`` key as written): by name when that is a non-empty string, quoted as
    TOML quotes it — ``[[sensors.gpio_input]] "door"`` — else by position, from
    1 — ``[[sensors.gpio_input]] #2``, the second ``[[sensors.gpio_input]]`` table."""
    if isinstance(name, str) and name:
        return f"[[{group}.{plugin}]] {json.dumps(name, ensure_ascii=False)}"
    return f"[[{group}.{plugin}]] #{index + 1}"


def distinct_labels(
    group: str, first: tuple[str, int, object], second: tuple[str, int, object]
) -> tuple[str, str]:
    """:func:`instance_label` of two ``(plugin, index, name)`` instances that clash:
    by name, or by position where two tables of one plugin share a name."""
    a, b = instance_label(group, *first), instance_label(group, *second)
    if a == b:
        a, b = instance_label(group, *first[:2]), instance_label(group, *second[:2])
    return a, b


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        item = get_args(tp)[1] if get_args(tp) else str
        return (
            "a table of "
            + {int: "integer", float: "number", bool: "true/false"}.get(item, "text")
            + " values"
        )
    return {str: "text", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(tp: Any, value: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise ValueError with the problem."""
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        problems = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value)
            except ValueError as exc:
                problems.append(str(exc))
        raise ValueError(problems[0] if len(problems) == 1 else f"must be {_type_name(tp)}")
    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        raise ValueError(f"must be one of {', '.join(repr(a) for a in get_args(tp))}")
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"must be {_type_name(tp)}")
        (item,) = get_args(tp)
        return [_convert(item, v) for v in value]
    if origin is dict:
        _key, item_type = get_args(tp)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"must be {_type_name(tp)}")
        try:
            return {k: _convert(item_type, v) for k, v in value.items()}
        except ValueError:
            raise ValueError(f"must be {_type_name(tp)}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config field type {tp!r}")
    raise ValueError(f"must be {_type_name(tp)}, not {type(value).__name__}")


def build(cls: type[T], data: Mapping[str, Any], *, table: str, file: str) -> T:
    """Check ``data`` (one TOML table, labelled ``table`` in errors, e.g. ``[log]``)
    against dataclass ``cls`` and build it."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{table} must be a table", file=file)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            fix = (
                f'did you mean "{close[0]}"?'
                if close
                else (f"known keys: {', '.join(sorted(fields))}")
            )
            raise ConfigError("unknown key", file=file, key=f"{table} {key}", fix=fix)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        help_text = f.metadata.get("help")
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise ConfigError("is required", file=file, key=f"{table} {name}", fix=help_text)
            continue
        kwargs[name] = _checked(f, hints[name], data[name], table, file)
    return _made(cls, kwargs, table, file)


def replace_checked(obj: T, changes: Mapping[str, Any], *, table: str, file: str) -> T:
    """``obj`` (a dataclass built by :func:`build`) with ``changes``, each checked
    as :func:`build` checks it (a setting changed while running)."""
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {f: getattr(obj, f) for f in fields if fields[f].init}
    for name, value in changes.items():
        if name not in fields:
            raise ConfigError("unknown key", file=file, key=f"{table} {name}")
        kwargs[name] = _checked(fields[name], hints[name], value, table, file)
    return _made(cls, kwargs, table, file)


def _checked(f: dataclasses.Field[Any], hint: Any, value: Any, table: str, file: str) -> Any:
    try:
        converted = _convert(hint, value)
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if low is not None and converted is not None and converted < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and converted is not None and converted > high:
            raise ValueError(f"must be at most {high}")
        check = f.metadata.get("check")
        if check is not None and converted is not None:
            check(converted)
    except ValueError as exc:
        raise ConfigError(
            str(exc), file=file, key=f"{table} {f.name}", value=value,
            fix=f.metadata.get("help"),
        ) from None  # fmt: skip
    return converted


def _made(cls: type[T], kwargs: dict[str, Any], table: str, file: str) -> T:
    """``cls(**kwargs)``; a ConfigError its ``__post_init__`` raises (a check across
    keys) gets the file and, for a bare ``key`` (``"pin"``, not ``"[…] pin"``), the
    table's label in front of it: ``[[sensors.gpio_button]] "door" hold_repeat``."""
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if exc.file is None:
            key = exc.key or table
            if not key.startswith("["):
                key = f"{table} {key}"
            raise ConfigError(exc.problem, file=file, key=key, value=exc.value,
                              fix=exc.fix) from None  # fmt: skip
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), file=file, key=table) from None


def describe(cls: type[Any]) -> list[tuple[str, str, Any, str]]:
    """``(key, type, default, help)`` per field, for docs and ``lichen plugins list``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not _MISSING else None
        if f.default_factory is not _MISSING:
            default = f.default_factory()
        out.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out
