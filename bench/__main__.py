"""Run a benchmark: ``uv run python -m bench NAME [options]`` (``all`` runs every one with defaults).

Each benchmark is a module ``bench/NAME.py`` with ``main(argv: list[str]) -> None`` that prints a table
(rich) comparing our path with the baseline measured in the same run.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

# Benchmark name -> module, where the module cannot carry the name: the helper scripts in bench/ run as
# ``python bench/_x.py``, which puts bench/ first on sys.path, so a bench/http.py would shadow the
# standard library's http for them.
_MODULES = {"http": "http_serving"}


def _names() -> list[str]:
    here = Path(__file__).parent
    renamed = {module: name for name, module in _MODULES.items()}
    modules = (m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    return sorted(renamed.get(module, module) for module in modules)


def _module(name: str) -> str:
    return f"bench.{_MODULES.get(name, name)}"


def main(argv: list[str]) -> None:
    names = _names()
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m bench {{all|{'|'.join(names)}}} [options]", file=sys.stderr)
        raise SystemExit(2)
    name, rest = argv[0], argv[1:]
    if name == "all":
        for each in names:
            importlib.import_module(_module(each)).main([])
        return
    if name not in names:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(_module(name)).main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
