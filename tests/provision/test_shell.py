"""shell.py: quoting must survive a real remote shell, byte for byte."""

from __future__ import annotations

import random
import shlex
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision import shell
from provision.ssh.remote import connect

HOSTILE = [
    "",
    " ",
    "two words",
    "  leading and trailing  ",
    "it's",
    '"double"',
    "'single'",
    "'\"'\"'",
    "$(echo pwned)",
    "`id`",
    "$HOME ${HOME} $0 $$ $@",
    "a; rm -rf /nonexistent-mcpctl",
    "a && b || c | d & e",
    "line one\nline two\n",
    "tab\there",
    "\r\n",
    "back\\slash \\n \\\\",
    "*?[a-z]{1,2}~",
    "-n",
    "--help",
    "#comment",
    "!event !! !$",
    "<in >out 2>&1",
    "(sub) {group}",
    "naïve ☃ 漢字 🐍",
    "%s %d %%",
    "=",
    "a=b",
]


# ------------------------------------------------------------------------------------------- local


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\0")), min_size=1, max_size=6))
def test_join_splits_back_to_the_same_argv(argv: list[str]) -> None:
    assert shlex.split(shell.join(argv)) == argv


def test_join_rejects_what_no_shell_can_carry() -> None:
    with pytest.raises(ValueError, match="empty"):
        shell.join([])
    with pytest.raises(ValueError, match="NUL"):
        shell.join(["a\0b"])
    with pytest.raises(TypeError, match="not a string"):
        shell.join("ls -l")


def test_env_prefix() -> None:
    assert shell.env_prefix({}) == []
    assert shell.env_prefix({"A": "x y", "B_2": ""}) == ["env", "A=x y", "B_2="]
    for bad in ("1A", "A-B", "A B", "", "Ä"):
        with pytest.raises(ValueError, match="not a valid environment variable name"):
            shell.env_prefix({bad: "v"})


def test_mask_hides_every_secret_longest_first() -> None:
    text = "token=abc123 again abc123 and abc1234"
    assert shell.mask(text, ["abc123", "abc1234", "", None]) == "token=*** again *** and ***"
    assert shell.mask("nothing here", ["absent"]) == "nothing here"


# ------------------------------------------------------------------------------------ real remote


SEPARATOR = "\x1e"  # printed after each string; none of the strings contains it


@pytest.mark.anyio
async def test_hostile_strings_round_trip_through_the_login_shell(sshd: Any) -> None:
    """sshd hands the line to the user's login shell (`$SHELL -c LINE`): one layer of quoting.

    Every string is a separate, separately quoted argument of one printf (one login shell per
    command is slow on hosts with heavy rc files).
    """
    async with connect(sshd.target()) as remote:
        result = await remote.run(["printf", f"%s{SEPARATOR}", *HOSTILE])
    assert result.stdout.split(SEPARATOR)[:-1] == HOSTILE


@pytest.mark.anyio
async def test_hostile_strings_round_trip_through_a_nested_sh_c(sshd: Any) -> None:
    """Two layers: the login shell, then `sh -c` given a line we joined ourselves."""
    inner = shell.join(["printf", f"%s{SEPARATOR}", *HOSTILE])
    async with connect(sshd.target()) as remote:
        result = await remote.run(["sh", "-c", inner])
    assert result.stdout.split(SEPARATOR)[:-1] == HOSTILE


@pytest.mark.anyio
async def test_many_random_strings_round_trip_in_one_command(sshd: Any) -> None:
    """A few hundred random strings (fixed seed), each a separate argument of one remote printf."""
    rng = random.Random(20240611)
    alphabet = [chr(c) for c in range(1, 128) if chr(c) != SEPARATOR] + list("éß漢🐍☃")
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))) for _ in range(300)]
    async with connect(sshd.target()) as remote:
        result = await remote.run(["printf", f"%s{SEPARATOR}", *texts])
    assert result.stdout.split(SEPARATOR)[:-1] == texts


@pytest.mark.anyio
async def test_env_prefix_passes_values_verbatim(sshd: Any) -> None:
    value = "x y $(id) 'q' \"dq\" ;"
    async with connect(sshd.target()) as remote:
        argv = [*shell.env_prefix({"MCPCTL_TEST_VALUE": value}), "printenv", "MCPCTL_TEST_VALUE"]
        result = await remote.run(argv)
    assert result.stdout == value + "\n"
