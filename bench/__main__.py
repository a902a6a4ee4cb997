"""Run a benchmark: ``uv run python -m bench NAME [options]`` (``all`` runs every one with defaults).

Each benchmark is a module ``bench/NAME.py`` with ``main(argv: list[str]) -> None`` that prints a table
(rich) comparing our path with the baseline measured in the same run.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _names() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> None:
    names = _names()
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m bench {{all|{'|'.join(names)}}} [options]", file=sys.stderr)
        raise SystemExit(2)
    name, rest = argv[0], argv[1:]
    if name == "all":
        for each in names:
            importlib.import_module(f"bench.{each}").main([])
        return
    if name not in names:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(f"bench.{name}").main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
