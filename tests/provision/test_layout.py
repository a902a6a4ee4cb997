"""The shape of ``provision/``: no import cycle, no oversized module or class, no error read as text.

These rules keep the package a house whose rooms a newcomer can find (see README "Layout"). Imports are
read with :mod:`ast`, so an import hidden inside a function or an ``if TYPE_CHECKING:`` block counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "provision"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ``provision`` that ``path`` imports, anywhere in the file.

    ``from provision.a import b`` names the submodule ``provision.a.b`` when there is one, else the
    package ``provision.a`` itself; a package's ``__init__`` is not counted for its submodules, or
    every facade would be a cycle with the modules it re-exports.
    """
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:
                    yield submodule
                elif node.module in known:
                    yield node.module


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported_modules(path, known)) - {name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_ignores_a_chain() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_reader_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from provision.errors import McpctlError\n"
        "def f():\n    from provision import shell\n    import provision.profiles\n"
    )
    known = {"provision.errors": source, "provision.shell": source, "provision.profiles": source}
    assert set(imported_modules(source, known)) == set(known)


def test_provision_has_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles in provision/: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_or_class_is_oversized(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines; split it by role"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"class {node.name} in {name} has {size} lines; split it by role"


def test_no_error_is_read_as_text() -> None:
    """Callers branch on an error's class or fields, never on the words of its message."""
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
                for side in node.comparators:
                    if _is_error_text(side):
                        offenders.append(f"{name}:{node.lineno}")
    assert offenders == [], "error messages parsed as text at " + ", ".join(offenders)


def _is_error_text(node: ast.expr) -> bool:
    """``exc.message``, ``str(exc)`` or ``str(err)``: the text of an exception."""
    if isinstance(node, ast.Attribute) and node.attr == "message":
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "str"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in {"exc", "err", "error", "e"}
    )


# Raise sites whose message already carries the advice from elsewhere: the server's own column-parser
# sentence, and a failed remote command (its callers say what it was for; the host's stderr says why).
_ADVICE_FROM_ELSEWHERE = {("provision.cli.provision", "OptionError"), ("provision.ssh.remote", "RemoteError")}


def test_every_error_raised_says_what_to_do() -> None:
    """An mcpctl error built in provision/ has a ``hint=`` or a message that already holds one (``;``)."""
    errors = {"McpctlError", "ProfileError", "ConnectError", "HostKeyError", "RemoteError"}
    errors |= {"ClientConfigError", "CloudError", "SandboxError", "OptionError", "ClientConfigChanged"}
    silent = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            if node.func.id not in errors:
                continue
            if (name, node.func.id) in _ADVICE_FROM_ELSEWHERE or any(k.arg == "hint" for k in node.keywords):
                continue
            if ";" not in (ast.get_source_segment(text, node) or ""):
                silent.append(f"{name}:{node.lineno}")
    assert silent == [], "errors that do not say what to do at " + ", ".join(silent)
