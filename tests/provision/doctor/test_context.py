"""How a phase records its check: live, timed, and a hard failure stops the run."""

from __future__ import annotations

import time

import pytest

from provision.doctor.context import Diagnosis, HardFailure
from provision.doctor.report import Check


def test_checks_are_reported_as_they_are_recorded() -> None:
    seen: list[Check] = []
    dx = Diagnosis("demo", "gemini", None, seen.append, 5.0)
    dx.add(Check("profile", True, 0.1, "found"))
    started = time.perf_counter() - 1.0
    dx.flag("config entry", started, "broken", "rewrite it")
    assert seen == dx.checks
    flagged = dx.checks[-1]
    assert not flagged.ok and flagged.fix == "rewrite it" and flagged.seconds >= 1.0
    assert dx.app == "the Gemini CLI" and dx.config_command == "`mcpctl config gemini demo`"


def test_a_hard_failure_records_its_check_and_names_the_phase() -> None:
    dx = Diagnosis("demo", "claude", None, None, 5.0)
    with pytest.raises(HardFailure) as raised:
        dx.fail("key file", time.perf_counter(), "no key", "set identity_file")
    assert raised.value.args == ("key file",)
    assert dx.checks[-1].phase == "key file" and not dx.checks[-1].ok
    assert dx.app == "Claude Desktop"
