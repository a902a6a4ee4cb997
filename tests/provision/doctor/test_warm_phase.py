"""``mcpctl doctor``'s warm-start phase, end to end: Claude's entry (`mcpctl connect`) through the real
sshd fixture on this checkout; the first session starts the host's warm server, the next one is
forked by it, and the doctor says which, with what the hand-off cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp_sales.warm import attach
from provision.doctor.warm import describe_status
from tests.mcp_sales.warm.helpers import REPO, wait_ready
from tests.provision.doctor.test_doctor import _check, _configure, _doctor, _profile


def test_the_doctor_reports_a_cold_then_a_warm_session_through_mcpctl_connect(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    directory = Path(attach.runtime_dir(str(REPO)))
    attach.ask("stop", str(directory))  # start from no warm server, whatever ran before
    config = _configure(_profile(sshd), tmp_path / "claude_desktop_config.json")
    first, _ = _doctor("demo", config)
    assert first.ok, first.failures
    cold = _check(first, "warm start")
    assert cold.ok and not cold.warning and cold.detail.startswith("cold: no warm server"), cold
    wait_ready(directory)
    second, _ = _doctor("demo", config)
    assert second.ok, second.failures
    warm = _check(second, "warm start")
    assert warm.ok and warm.detail.startswith("warm: forked by the host's warm server"), warm
    assert "hand-off and fork" in warm.detail and "is ready" in warm.detail


def test_the_status_of_a_host_without_the_launcher_is_not_read_as_one() -> None:
    assert describe_status("") is None
    assert describe_status("sh: 1: /srv/.venv/bin/python: not found") is None
    line = describe_status("none\ndisk code 0123\nlast none\n")
    assert line == "no session recorded; no warm server is ready yet"
