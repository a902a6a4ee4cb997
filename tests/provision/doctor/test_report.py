"""The report's verdicts and the helpers that keep a check's words short."""

from __future__ import annotations

import errno
from pathlib import Path

from mcp.shared.exceptions import MCPError

from provision.connect.jsonrpc import GAVE_UP
from provision.doctor.report import PHASES, Check, DoctorReport, clip, message_of, shown
from provision.errors import ConnectError


def _report(*checks: Check) -> DoctorReport:
    return DoctorReport("demo", checks)


def test_a_warning_passes_and_a_skipped_phase_is_no_failure_of_its_own() -> None:
    warned = Check("config entry", True, 0.1, "no entry", "add it", warning=True)
    failed = Check("connect", False, 2.0, "refused", "open the port")
    skipped = Check("spawn", False, 0.0, "not run: the connect check failed", skipped=True)
    report = _report(warned, failed, skipped)
    assert not report.ok
    assert report.failures == (failed,)
    assert report.warnings == (warned,)
    assert _report(warned).ok


def test_total_counts_only_what_the_client_waits_for() -> None:
    checks = [Check(phase, True, 1.0, "") for phase in PHASES]
    assert _report(*checks).total_s == 2.0  # spawn and initialize
    assert _report().budget_s == 60.0


def test_shown_paths_are_home_relative_when_they_can_be(tmp_path: Path) -> None:
    assert shown(Path.home() / ".ssh" / "id_ed25519") == "~/.ssh/id_ed25519"
    assert shown(Path("/etc/hosts")) == "/etc/hosts"


def test_clip_keeps_one_line_and_cuts_long_text() -> None:
    assert clip("a\n  b\tc") == "a b c"
    assert clip("x" * 20, 10) == "xxxxxxx..."


def test_message_of_takes_what_is_wrong_not_the_advice_for_another_command() -> None:
    error = ConnectError(
        "cannot reach h:22: connection refused", hint="`mcpctl doctor demo` checks each step"
    )
    assert message_of(error) == "cannot reach h:22: connection refused"
    group = Exception("task group")
    group.exceptions = (error,)  # type: ignore[attr-defined]  # the shape of an ExceptionGroup
    assert message_of(group) == "cannot reach h:22: connection refused"
    assert message_of(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")) == (
        "No such file or directory (/x)"
    )
    assert message_of(RuntimeError()) == "RuntimeError"


def test_message_of_a_proxy_error_takes_its_message_field_not_the_whole_sentence() -> None:
    sentence = "mcpctl gave up on the server of 'x' after 3.0 s: cannot reach h:22; run `mcpctl doctor x`"
    fields = {"message": "cannot reach h:22", "hint": "run `mcpctl doctor x`", "error": "ConnectError"}
    assert message_of(MCPError(GAVE_UP, sentence, fields)) == "cannot reach h:22"
    # Without the fields (another server's error) the sentence is all there is.
    assert message_of(MCPError(GAVE_UP, sentence)) == sentence
