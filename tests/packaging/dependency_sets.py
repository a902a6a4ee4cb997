"""The two dependency sets of the package, read from ``pyproject.toml`` and ``uv.lock``.

The toolkit is the project's own dependencies (what ``pip install mcpctl`` brings to a laptop); the
server is the ``server`` extra, which is also the ``server`` dependency group a host installs. Each set
is closed over the lock's dependency graph (every marker and version counted, so a package needed on
any platform or Python is in), and mapped to the top-level modules its distributions install here.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 spelling
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PROJECT = "mcpctl"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@functools.cache
def _lock_packages() -> dict[str, list[dict[str, Any]]]:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock["package"]:
        packages.setdefault(normalize(package["name"]), []).append(package)
    return packages


def closure(roots: Iterable[dict[str, Any]]) -> set[str]:
    """Every distribution the lock installs for these dependency entries, on any platform."""
    packages = _lock_packages()
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        entry = todo.pop()
        name = normalize(entry["name"])
        extras = entry.get("extra", [])
        key_seen = name in seen
        seen.add(name)
        for package in packages.get(name, []):
            if not key_seen:
                todo.extend(package.get("dependencies", []))
            for extra in extras:
                todo.extend(package.get("optional-dependencies", {}).get(extra, []))
    return seen


def _project() -> dict[str, Any]:
    return _lock_packages()[PROJECT][0]


def toolkit() -> set[str]:
    """The distributions of a plain ``pip install mcpctl``."""
    return closure(_project()["dependencies"])


def server() -> set[str]:
    """The distributions of the ``server`` extra (and group): what a host installs."""
    return closure(_project()["optional-dependencies"]["server"])


@functools.cache
def _modules_of() -> dict[str, set[str]]:
    """Distribution name -> the top-level modules it installs in this environment."""
    found: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            found.setdefault(normalize(dist), set()).add(module)
    return found


def modules_of(distributions: Iterable[str]) -> set[str]:
    """The top-level modules these distributions install (those installed here)."""
    return {module for dist in distributions for module in _modules_of().get(dist, set())}


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) of every absolute import in the file, at any depth (functions included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def module_path(name: str) -> Path | None:
    """The file of a first-party module (``provision.x`` or ``mcp_sales.y``), if it is one."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def toolkit_files() -> set[Path]:
    """Every module of ``provision`` and every first-party module they reach, transitively."""
    todo = sorted((REPO / "provision").rglob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name, _ in imports_of(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # `import a.b.c` runs a, a.b and a.b.c
                found = module_path(".".join(parts[:depth]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


# The toolkit modules that never run on a laptop, so the Windows and macOS type checks leave them out:
# the sync helper runs on the host (sent there as source), and the sandbox server only on POSIX
# (`mcpctl sandbox up` refuses Windows with a sentence before it starts one).
NOT_ON_LAPTOPS = ("provision/sync/helper.py", "provision/ssh/sandbox_server.py")


def laptop_files() -> list[str]:
    """The files ``make typecheck`` checks with ``mypy --platform win32`` and ``--platform darwin``."""
    files = {path.relative_to(REPO).as_posix() for path in toolkit_files()}
    return sorted(files - set(NOT_ON_LAPTOPS))


if __name__ == "__main__":  # `python -m tests.packaging.dependency_sets`: the list, for the Makefile
    print(" ".join(laptop_files()))
