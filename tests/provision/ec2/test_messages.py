"""Every error provision/ec2 raises is in the one style: ``message; hint``, lowercase-first, no period.

Read from the source with :mod:`ast`, so an error that no other test triggers is held to it too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision import errors

EC2 = Path(__file__).resolve().parents[3] / "provision" / "ec2"
ERROR_CLASSES = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.McpctlError)
}
# A name may start a clause: it keeps its capital.
PROPER = ("AWS", "EC2", "Canonical", "SSH", "mcpctl")


def _text_parts(node: ast.expr) -> list[str]:
    """The literal text of a message expression, in order (f-string holes left out)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [
            part.value
            for part in node.values
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
        ]
    if isinstance(node, ast.BinOp):
        return _text_parts(node.left) + _text_parts(node.right)
    return []


def _errors_raised() -> Iterator[tuple[str, str, list[str]]]:
    """(where, which part, literal text) of every message and hint given to an mcpctl error in ec2/."""
    for path in sorted(EC2.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ERROR_CLASSES
            ):
                where = f"{path.name}:{node.lineno}"
                if node.args:
                    yield where, "message", _text_parts(node.args[0])
                for keyword in node.keywords:
                    if keyword.arg == "hint":
                        yield where, "hint", _text_parts(keyword.value)


def test_the_source_has_errors_to_check() -> None:
    assert len(list(_errors_raised())) > 30


@pytest.mark.parametrize(("where", "part", "text"), list(_errors_raised()), ids=lambda v: str(v)[:40])
def test_messages_and_hints_are_lowercase_first_clauses_without_a_period(
    where: str, part: str, text: list[str]
) -> None:
    if not text:
        return  # all of it comes from elsewhere (an AWS message, a variable)
    first, last = text[0], text[-1]
    assert not last.rstrip().endswith("."), f"{where}: the {part} ends with a period"
    if first and first[0].isupper():
        assert first.startswith(PROPER), f"{where}: the {part} starts with a capital: {first!r}"
