"""What the session phases conclude when the server does not answer, or answers slowly."""

from __future__ import annotations

import tempfile

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT

from provision.connect.jsonrpc import GAVE_UP, LINK_DROPPED
from provision.doctor.context import Diagnosis
from provision.doctor.launch import Launch
from provision.doctor.server import is_answer, slow_fix, start_fix, stderr_tail

from .conftest import MakeDiagnosis

PYTHON = "/srv/demo/.venv/bin/python"
PROXY = Launch("/usr/local/bin/mcpctl", ("connect", "demo"))
SSH = Launch("/usr/bin/ssh", ("-p", "2222", "u@h.example", f"exec {PYTHON} -m mcp_sales"))
CLOSED = MCPError(CONNECTION_CLOSED, "Connection closed")


def _dx(diagnosis: MakeDiagnosis, launch: Launch = PROXY, **fields: object) -> Diagnosis:
    return diagnosis(**{"launch": launch, "python": PYTHON, "connect_s": 0.2, **fields})


def test_a_stale_entry_explains_everything(diagnosis: MakeDiagnosis) -> None:
    dx = _dx(diagnosis, SSH, stale_entry_fix="run `mcpctl config claude demo --style ssh` again")
    assert start_fix(dx, CLOSED, "", "", 1.0) == dx.stale_entry_fix


@pytest.mark.parametrize(
    ("present", "said"),
    [
        (False, ""),
        (None, f"bash: {PYTHON}: No such file or directory"),
        (None, f"sh: 1: {PYTHON}: not found"),
    ],
)
def test_a_missing_python_says_provision(diagnosis: MakeDiagnosis, present: bool | None, said: str) -> None:
    fix = start_fix(_dx(diagnosis, python_present=present), CLOSED, f"Connection closed {said}", said, 1.0)
    assert fix == (
        f"the server's python {PYTHON} is missing on the host: install the server's environment with "
        "`mcpctl provision demo`."
    )


def test_the_clients_own_timeout_names_the_slow_part(diagnosis: MakeDiagnosis) -> None:
    timeout = MCPError(REQUEST_TIMEOUT, "Request 'initialize' timed out")
    fix = start_fix(_dx(diagnosis), timeout, "", "", 3.0)
    assert fix.startswith("the server's start on the host takes over 2.8 s of the 60 s Claude Desktop waits")


def test_the_proxy_giving_up_is_its_answer_not_a_timeout(diagnosis: MakeDiagnosis) -> None:
    gave_up = MCPError(GAVE_UP, "mcpctl gave up on the server of 'demo' after 3.0 s: it ended")
    assert is_answer(gave_up) and is_answer(MCPError(LINK_DROPPED, "the server went away"))
    fix = start_fix(_dx(diagnosis), gave_up, gave_up.message, "", 3.0)
    assert fix.startswith("the server stopped before answering: `mcpctl logs demo` shows its error output")


def test_only_the_other_sides_errors_are_answers() -> None:
    assert is_answer(MCPError(INTERNAL_ERROR, "boom"))
    assert not is_answer(CLOSED)
    assert not is_answer(MCPError(REQUEST_TIMEOUT, "timed out"))
    assert not is_answer(ValueError("x"))


def test_a_proxy_that_finds_no_profile_has_another_environment(diagnosis: MakeDiagnosis) -> None:
    stderr = "mcpctl connect: error: no profile named 'demo'; create it with `mcpctl provision demo`"
    fix = start_fix(_dx(diagnosis), CLOSED, f"Connection closed {stderr}", stderr, 0.5)
    assert fix.startswith("the entry's environment (MCPCTL_HOME, XDG_*) points mcpctl at another profile")


def test_a_command_of_another_kind_points_at_its_output(diagnosis: MakeDiagnosis) -> None:
    fix = start_fix(_dx(diagnosis, SSH), CLOSED, "Connection closed", "", 0.5)
    assert fix.startswith("the server stopped before answering (its error output is above)")


@pytest.mark.parametrize(
    ("start_s", "spawn_s", "slowest"),
    [(40.0, 0.1, "server's start on the host"), (0.5, 0.1, "SSH connection"), (0.3, 9.0, "local start")],
)
def test_slow_fix_names_the_slowest_part(
    diagnosis: MakeDiagnosis, start_s: float, spawn_s: float, slowest: str
) -> None:
    dx = _dx(diagnosis, connect_s=0.4)
    assert slow_fix(dx, start_s, spawn_s).startswith(f"the {slowest}")


def test_stderr_tail_keeps_the_last_lines_on_one_line() -> None:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        errlog.write("one\n\ntwo\nthree\n  four  \n")
        assert stderr_tail(errlog) == "two | three | four"
