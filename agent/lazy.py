"""Lazy re-exports: a package's public names, imported on first use.

``import agent`` (and ``agent.cloud``) stay cheap on a Pi Zero: each name in
the table is imported from its module only when someone reads it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str], names: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: ``where`` maps
    each public name to the submodule defining it."""
    listed = sorted(names)

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's name)
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)  # the next read is a plain lookup
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return listed

    return __getattr__, __dir__
