"""The rules: what a source manages, what is never sent, never entered, never deleted."""

from __future__ import annotations

import pytest

from provision.layout import STATE_DIR
from provision.sync.helper import temp_name
from provision.sync.rules import (
    BUILTIN_IGNORES,
    PROTECTED_DIRS,
    PRUNED_DIRS,
    Scope,
    gitignore_spec,
    is_protected,
    literal_pattern,
    may_contain,
)


def test_a_literal_pattern_matches_exactly_its_path() -> None:
    name = "sales [2024]! #1 *.csv"
    spec = gitignore_spec((literal_pattern(name),))
    assert spec.match_file(name)
    assert not spec.match_file("sales 2.csv") and not spec.match_file(f"sub/{name}")


def test_a_scope_manages_what_it_includes_and_does_not_ignore_below_its_prefix() -> None:
    scope = Scope("data", ("/x.csv", "/sub/"), ("*.tmp", "/sub/private/"))
    assert scope.manages("data/x.csv") and scope.manages("data/sub/y.csv")
    assert not scope.manages("x.csv") and not scope.manages("data/y.csv")
    assert not scope.manages("data/sub/z.tmp")
    # Like git: nothing in an ignored directory comes back, whatever the later patterns say.
    assert not scope.manages("data/sub/private/keep.csv")


@pytest.mark.parametrize(
    ("include", "directory", "expected"),
    [
        (("/pkg/",), "pkg", True),
        (("/pkg/",), "other", False),
        (("/pkg/sub/x.py",), "pkg", True),
        (("/pkg/sub/x.py",), "pkg/other", False),
        (("*.py",), "anything/at/all", True),  # slash-free patterns match at any depth
        (("/p*/x.py",), "anything", True),  # a wildcard ends the literal prefix
        (("!/pkg/",), "other", True),  # negations are never used to prune
        (("# /pkg/", ""), "other", False),
    ],
)
def test_the_walk_enters_only_directories_an_include_could_match_in(
    include: tuple[str, ...], directory: str, expected: bool
) -> None:
    assert may_contain(include, directory) is expected


def test_our_state_temporaries_and_venvs_are_never_sent_entered_or_deleted() -> None:
    spec = gitignore_spec(BUILTIN_IGNORES)
    for path in [f"{STATE_DIR}/manifest.json", ".venv/bin/python", temp_name("a.py", "0123456789ab")]:
        assert spec.match_file(path), path
    assert {STATE_DIR, ".venv", ".git", "__pycache__"} <= set(PRUNED_DIRS)
    assert {STATE_DIR, ".venv", ".mcp_sales_cache"} == PROTECTED_DIRS
    assert is_protected(f"{STATE_DIR}/manifest.json") and is_protected("pkg/.venv/x.py")
    assert not is_protected(".venv") and not is_protected("pkg/a.py")
