"""``lichen`` (the console script) and ``python -m agent``: the command line.

The console script imports :func:`main` from here, not from :mod:`agent.cli`,
and :mod:`agent.cli` is imported only when :func:`main` runs. A process the
agent starts with ``spawn`` — the entry-checking workers of
:mod:`agent.store.verify_workers` — runs the parent's main script again, as
``__mp_main__`` and without calling :func:`main` (multiprocessing's
``init_main_from_path``): importing only this module, it no longer loads
click, the configuration and the log store (0.2–0.3 s of CPU per worker, paid
at every start of a pool). ``python -m agent`` and ``python -m bench`` are
not run again at all (multiprocessing skips a ``__main__`` module).
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
