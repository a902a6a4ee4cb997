"""The launch command's fallbacks, on a copy of the package: no warm server, older code, a killed one.

Each time the session starts cold in place (and is served: the user waits no longer than without
warm start), and a fresh warm server started in the background serves the next session, with the
code on disk now.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mcp_sales.warm.helpers import (
    REPO,
    Session,
    alive,
    daemon_pid,
    last_session,
    launch_argv,
    stop_daemon,
    until,
    wait_ready,
    warm_env,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc: Linux")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the server package that the test may change, and its warm server stopped at the end."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "mcp_sales", root / "mcp_sales", ignore=shutil.ignore_patterns("__pycache__"))
    yield root
    stop_daemon(tmp_path / "run")


def session_version(root: Path, run: Path, data: Path, cwd: Path) -> str:
    """Start a session with the launch command of ``root``; the server's version from initialize."""
    # PYTHONPATH: the cold server and the warm one import the copy, as the host's venv imports its tree.
    env = warm_env(run, PYTHONPATH=str(root), MCP_SALES_WARM_IDLE="120")
    session = Session(
        launch_argv("--data", str(data), "--cache-dir", str(cwd / "cache"), root=root), env, cwd
    )
    try:
        version: str = session.initialize()["serverInfo"]["version"]
        assert session.request("tools/list")["result"]["tools"]
    finally:
        assert session.close() == 0
    session.assert_all_json_rpc()
    return version


def test_cold_start_then_warm_new_code_on_the_next_session_and_a_killed_warm_server_comes_back(
    project: Path, tmp_path: Path, sample_csv: Path
) -> None:
    run = tmp_path / "run"
    original = (project / "mcp_sales" / "__init__.py").read_text()

    # No warm server: this session starts cold, and starts one.
    first = session_version(project, run, sample_csv, tmp_path)
    assert last_session(run).split()[1] == "cold"
    wait_ready(run)
    assert session_version(project, run, sample_csv, tmp_path) == first
    assert last_session(run).split()[1] == "warm"

    # A code change (as a sync makes it): the next session runs the new code, cold, then warm again.
    (project / "mcp_sales" / "__init__.py").write_text(original.replace(first, "9.9.9"))
    old = daemon_pid(run)
    assert session_version(project, run, sample_csv, tmp_path) == "9.9.9"
    assert "older code" in last_session(run)
    until("the outdated warm server to exit", lambda: not alive(old))
    wait_ready(run)
    assert session_version(project, run, sample_csv, tmp_path) == "9.9.9"
    assert last_session(run).split()[1] == "warm"

    # A killed warm server: the next session starts cold, and a new warm server serves the one after.
    killed = daemon_pid(run)
    os.kill(killed, signal.SIGKILL)
    until("the killed warm server to be gone", lambda: not alive(killed))
    assert session_version(project, run, sample_csv, tmp_path) == "9.9.9"
    assert last_session(run).split()[1] == "cold"
    wait_ready(run)
    assert daemon_pid(run) != killed
    session_version(project, run, sample_csv, tmp_path)
    assert last_session(run).split()[1] == "warm"


def test_the_warm_path_can_be_switched_off(project: Path, tmp_path: Path, sample_csv: Path) -> None:
    run = tmp_path / "run"
    env = warm_env(run, PYTHONPATH=str(project), MCP_SALES_WARM="0")
    session = Session(launch_argv("--data", str(sample_csv), root=project), env, tmp_path)
    session.initialize()
    assert session.close() == 0
    assert "the warm path is off" in last_session(run)
    assert not (run / "sock").exists() and not (run / "daemon.log").exists()
